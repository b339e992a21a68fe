/**
 * The agent: registers this machine, runs its worker with the machine token, sends keepalives
 * with host metrics, and keeps doing so through gateway outages (exponential backoff with jitter,
 * re-registering when the gateway expired the machine). Observers (TUI, metrics) read `snapshot()`
 * and listen to "change"; container logs are kept in bounded buffers for the TUI's log view.
 */
import { EventEmitter } from "node:events";
import { arch, hostname as osHostname, platform } from "node:os";
import type { Logger } from "pino";
import type { LogLine, MachineRegisterResponse } from "@beta9/protocol";
import {
  detectCapacity, detectDevices, startWorker as realStartWorker, type DeviceGroup, type StartedWorker, type StartWorkerOptions,
  type WorkerContainerInfo,
} from "@beta9/worker";
import { Backoff, sleep } from "./backoff.js";
import { gatewayUrls, type AgentConfig } from "./config.js";
import { GatewayCallError, GatewayClient } from "./gateway-client.js";
import { SystemSampler } from "./system.js";
import { AGENT_VERSION } from "./version.js";

export type AgentStatus = "STARTING" | "REGISTERING" | "READY" | "RECONNECTING" | "STOPPING" | "STOPPED";

export interface ContainerView {
  id: string;
  /** Stub id, else the command: what the dashboard names the container by. */
  label: string;
  state: string;
  reason?: string;
  exitCode?: number | null;
  gpuIndices: number[];
  createdAt: number;
  endedAt?: number;
}

export interface AgentSnapshot {
  status: AgentStatus;
  machineId: string;
  gateway: string;
  pool: string;
  startedAt: number;
  lastKeepaliveAt?: number;
  lastError?: string;
  workerConnected: boolean;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  gpus: { total: number; free: number };
  gpuTypes: { type: string; count: number }[];
  containers: ContainerView[];
  keepalives: { ok: number; failed: number };
  /** Successful registrations: more than one means the gateway expired or forgot this machine. */
  registrations: number;
}

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  /** Injectable for tests; default @beta9/worker's startWorker. */
  startWorker?: (options: StartWorkerOptions) => Promise<StartedWorker>;
  detect?: () => Promise<DeviceGroup[]>;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Worker runtime object prefix; distinct per agent when several share a host (tests). */
  workerName?: string;
}

const KEPT_CONTAINERS = 100;
const KEPT_LOG_LINES = 2000;
const SAMPLE_MS = 2000;

export class Agent extends EventEmitter<{ change: []; log: [string, LogLine] }> {
  private readonly client: GatewayClient;
  private readonly sampler: SystemSampler;
  private readonly abort = new AbortController();
  private readonly backoff: Backoff;
  private readonly containers = new Map<string, ContainerView>();
  private readonly logs = new Map<string, LogLine[]>();
  private status: AgentStatus = "STARTING";
  private machineId: string;
  private readonly startedAt = Date.now();
  private lastKeepaliveAt: number | undefined;
  private lastError: string | undefined;
  private gpuTypes: { type: string; count: number }[] = [];
  private metrics = { cpuPercent: 0, memoryPercent: 0, diskPercent: 0 };
  private readonly counts = { ok: 0, failed: 0 };
  private worker: StartedWorker | undefined;
  private loop: Promise<void> | undefined;
  private intervalSeconds: number;
  private failure: Error | undefined;
  private registrations = 0;
  private sampleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: AgentOptions) {
    super();
    this.client = new GatewayClient(gatewayUrls(o.config), o.config.machine.token, undefined, o.config.gateway.tlsCa);
    this.sampler = new SystemSampler(o.config.stateDir);
    this.backoff = new Backoff({ minMs: o.backoffMinMs ?? 1000, maxMs: o.backoffMaxMs ?? 30_000 });
    this.machineId = o.config.machine.id;
    this.intervalSeconds = o.config.keepaliveIntervalSeconds;
  }

  /** Starts in the background; `stop()` ends it, `finished()` reports an error that ended it early. */
  start(): void {
    // Host figures refresh on their own clock, so the dashboard shows them before the first keepalive.
    this.sample();
    this.sampleTimer = setInterval(() => this.sample(), SAMPLE_MS);
    this.sampleTimer.unref();
    this.loop = this.run().catch((err: unknown) => {
      this.o.logger.error({ err }, "the agent stopped on an unexpected error");
      this.failure = err as Error;
      this.setStatus("STOPPED", (err as Error).message);
    });
  }

  /** Resolves when the agent's loop ends: with the error that ended it, or undefined after stop(). */
  async finished(): Promise<Error | undefined> {
    await this.loop;
    return this.failure;
  }

  snapshot(): AgentSnapshot {
    return {
      status: this.status, machineId: this.machineId, gateway: this.client.baseUrl, pool: this.o.config.pool,
      startedAt: this.startedAt, ...(this.lastKeepaliveAt !== undefined && { lastKeepaliveAt: this.lastKeepaliveAt }),
      ...(this.lastError !== undefined && { lastError: this.lastError }),
      workerConnected: this.worker?.worker.connected ?? false, ...this.metrics,
      gpus: this.worker?.worker.gpuUsage() ?? { total: 0, free: 0 }, gpuTypes: this.gpuTypes,
      containers: [...this.containers.values()].sort((a, b) => b.createdAt - a.createdAt),
      keepalives: { ...this.counts }, registrations: this.registrations,
    };
  }

  /** The kept log lines of one container (the last KEPT_LOG_LINES). */
  containerLogs(id: string): LogLine[] {
    return this.logs.get(id) ?? [];
  }

  private setStatus(status: AgentStatus, error?: string): void {
    this.status = status;
    if (error !== undefined) this.lastError = error;
    this.emit("change");
  }

  private async run(): Promise<void> {
    const { config, logger } = this.o;
    const signal = this.abort.signal;
    const devices = await (this.o.detect ?? (() => detectDevices({ warn: (m) => logger.warn(m) })))();
    const capacity = detectCapacity({}, devices);
    this.gpuTypes = capacity.gpus;
    await this.register(capacity, signal);
    if (signal.aborted) return;
    // Keepalives start now, not once the worker is up: preparing it (runner bundle, reaping what a
    // crashed predecessor left) can outlast the gateway's expiry on a busy machine.
    const keepalives = (async () => {
      while (!signal.aborted) {
        const ok = await this.keepalive(capacity, signal);
        await sleep(ok ? this.intervalSeconds * 1000 : this.backoff.next(), signal);
      }
    })();
    try {
      const started = await (this.o.startWorker ?? realStartWorker)({
        gatewayUrl: gatewayUrls(config), token: config.machine.token, stateDir: config.stateDir, logger: logger.child({ component: "worker" }),
        runtime: config.runtime, allowUnisolated: config.allowUnisolated, pool: config.pool, workerId: this.machineId, devices, version: AGENT_VERSION,
        name: this.o.workerName ?? config.worker.name, subnet: config.worker.subnet,
        ...(config.gateway.tlsCa && { tlsCa: config.gateway.tlsCa }),
      });
      started.worker.events.on("container", (info) => this.onContainer(info));
      started.worker.events.on("log", (id, line) => this.onLog(id, line));
      this.worker = started;
      this.emit("change");
    } catch (err) {
      this.abort.abort();
      await keepalives;
      throw err;
    }
    await keepalives;
  }

  /** Registers, retrying with backoff until it succeeds or the agent stops. */
  private async register(capacity: ReturnType<typeof detectCapacity>, signal: AbortSignal): Promise<void> {
    this.setStatus("REGISTERING");
    while (!signal.aborted) {
      try {
        const res: MachineRegisterResponse = await this.client.register({
          hostname: this.o.config.machine.hostname || osHostname(), os: platform(), arch: arch(), agentVersion: AGENT_VERSION,
          cpuMillicores: capacity.cpuMillicores, memoryMiB: capacity.memoryMiB, gpus: capacity.gpus,
        }, signal);
        this.machineId = res.machine.id;
        this.registrations += 1;
        // Never slower than the gateway asks: a longer interval would let the machine expire.
        this.intervalSeconds = Math.min(this.o.config.keepaliveIntervalSeconds, res.keepaliveIntervalSeconds);
        this.backoff.reset();
        this.o.logger.info({ machineId: this.machineId, pool: res.machine.pool, keepaliveSeconds: this.intervalSeconds }, "registered with the gateway");
        this.setStatus("REGISTERING");
        return;
      } catch (err) {
        if (signal.aborted) return;
        const delay = this.backoff.next();
        this.o.logger.warn({ err: (err as Error).message, retryInMs: delay }, "registration failed; retrying");
        this.setStatus("RECONNECTING", (err as Error).message);
        await sleep(delay, signal);
      }
    }
  }

  /** One keepalive; false when it failed (the caller backs off). Re-registers when the gateway asks. */
  private async keepalive(capacity: ReturnType<typeof detectCapacity>, signal: AbortSignal): Promise<boolean> {
    const running = [...this.containers.values()].filter((c) => c.state !== "EXITED").length;
    try {
      const total = capacity.gpus.reduce((n, g) => n + g.count, 0);
      await this.client.keepalive({ ...this.metrics, gpus: this.worker?.worker.gpuUsage() ?? { total, free: total }, containers: running }, signal);
      this.counts.ok += 1;
      this.lastKeepaliveAt = Date.now();
      this.backoff.reset();
      this.lastError = undefined;
      this.setStatus("READY");
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      this.counts.failed += 1;
      const message = (err as Error).message;
      if (err instanceof GatewayCallError && err.needsRegister) {
        this.o.logger.warn({ err: message }, "the gateway no longer knows this machine as ready; registering again");
        await this.register(capacity, signal);
        return signal.aborted ? false : this.keepalive(capacity, signal);
      }
      this.o.logger.warn({ err: message }, "keepalive failed");
      this.setStatus("RECONNECTING", message);
      return false;
    }
  }

  private sample(): void {
    this.metrics = { cpuPercent: this.sampler.cpuPercent(), memoryPercent: this.sampler.memoryPercent(), diskPercent: this.sampler.diskPercent() };
  }

  private onContainer(info: WorkerContainerInfo): void {
    const view: ContainerView = {
      id: info.containerId, label: info.stubId ?? info.command.join(" ").slice(0, 60), state: info.state.state,
      ...(info.state.reason !== undefined && { reason: info.state.reason }),
      ...(info.state.exitCode !== undefined && { exitCode: info.state.exitCode }),
      gpuIndices: info.gpuIndices, createdAt: info.createdAt, ...(info.endedAt !== undefined && { endedAt: info.endedAt }),
    };
    this.containers.set(view.id, view);
    // Forget the oldest finished containers (and their logs) beyond the kept number.
    if (this.containers.size > KEPT_CONTAINERS) {
      const oldest = [...this.containers.values()].filter((c) => c.state === "EXITED").sort((a, b) => a.createdAt - b.createdAt)[0];
      if (oldest) {
        this.containers.delete(oldest.id);
        this.logs.delete(oldest.id);
      }
    }
    this.emit("change");
  }

  private onLog(id: string, line: LogLine): void {
    let lines = this.logs.get(id);
    if (!lines) this.logs.set(id, (lines = []));
    lines.push(line);
    if (lines.length > KEPT_LOG_LINES) lines.splice(0, lines.length - KEPT_LOG_LINES);
    this.emit("log", id, line);
  }

  /** Stops keepalives, then the worker and its containers (SIGTERM, SIGKILL after graceMs). */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.status === "STOPPED") return;
    this.setStatus("STOPPING");
    clearInterval(this.sampleTimer);
    this.abort.abort();
    await this.loop;
    await this.worker?.close(graceMs);
    this.setStatus("STOPPED");
  }
}
