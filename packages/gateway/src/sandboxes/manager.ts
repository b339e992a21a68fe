/**
 * Sandboxes: a container running the sandbox daemon, a row in the store, and a lifetime.
 *
 * The row is the truth for lifetime: a reaper ends every sandbox whose `expires_at` passed, so a
 * sandbox whose creator died still ends at its TTL, after a gateway restart too. The container
 * registry is the truth for where the daemon answers: once its container is RUNNING, the
 * daemon's /health is polled and the sandbox becomes RUNNING. A container that reappears (a
 * worker reconnecting after a gateway restart) for a sandbox that has ended is stopped then.
 */
import { checkQuota, DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import { daemonPool, dropDaemonPool } from "./proxy.js";
import { randomBytes, randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { request } from "undici";
import { Beta9Error, RUNNER_PORT } from "@beta9/protocol";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { SandboxConfig, SandboxEndReason, SandboxRecord, Store } from "../store/types.js";

/** The daemon's port inside the container. */
export const SANDBOX_PORT = RUNNER_PORT;
export const SANDBOX_ID_ENV = "BETA9_SANDBOX_ID";
export const SANDBOX_SECRET_ENV = "BETA9_SANDBOX_SECRET";

export interface SandboxManagerOptions {
  store: Store;
  scheduler: Scheduler;
  logger?: Logger;
  /** Checks (throws SECRET_NOT_FOUND) and reads the values of named secrets. */
  secrets?: { check(workspaceId: string, names: readonly string[]): void; env(workspaceId: string, names: readonly string[]): Record<string, string> };
  /** Per-workspace limits (default DEFAULT_QUOTAS): live sandboxes here, containers in the scheduler. */
  quotas?: WorkspaceQuotas;
  /** How often expiry is checked (default 1 s). */
  reapIntervalMs?: number;
  /** How long an operation waits for a sandbox to start (default 120 s: covers an image fetch). */
  readyTimeoutMs?: number;
  /**
   * After a gateway restart, how long a live sandbox may have no container before it is declared
   * lost (its worker never came back; default 90 s, longer than a worker's reconnect).
   */
  lostAfterMs?: number;
}

interface Live {
  sandboxId: string;
  origin: string | null;
  ready: boolean;
  waiters: { resolve: (origin: string) => void; reject: (err: Error) => void }[];
  probing: boolean;
}

export class SandboxManager {
  private readonly live = new Map<string, Live>(); // by container id
  private readonly reaper: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly o: SandboxManagerOptions) {
    this.unsubscribe = o.scheduler.containers.subscribe("*", (e) => {
      if (e.kind === "state") void this.onContainer(e.container).catch((err: unknown) => o.logger?.error({ err }, "sandbox state update failed"));
    });
    this.reaper = setInterval(() => void this.reap().catch((err: unknown) => o.logger?.error({ err }, "sandbox reaper failed")), o.reapIntervalMs ?? 1000);
    this.reaper.unref();
  }

  async create(workspaceId: string, input: SandboxConfig): Promise<SandboxRecord> {
    // Refused before anything is stored when no connected worker could ever run it (e.g. only
    // workers that isolate nothing): a sandbox is for untrusted code.
    const never = this.o.scheduler.neverFits({
      cpuMillicores: input.cpuMillicores, memoryMiB: input.memoryMiB, gpu: [], gpuCount: 0, pool: input.pool, workspaceId,
      ...(input.egress && { egress: input.egress }),
    });
    if (never) throw new Beta9Error("CAPACITY_UNAVAILABLE", { reason: `sandbox: ${never}` });
    const quotas = this.o.quotas ?? DEFAULT_QUOTAS;
    const live = await this.o.store.sandboxes.list(workspaceId, { active: true, limit: quotas.sandboxes + 1, offset: 0 });
    checkQuota(quotas, "sandboxes", live.length);
    checkQuota(quotas, "containers", this.o.scheduler.containers.active(workspaceId));
    const secretNames = input.secrets ?? [];
    if (secretNames.length > 0) {
      if (!this.o.secrets) throw new Beta9Error("SECRET_NOT_FOUND", { name: secretNames[0]! });
      this.o.secrets.check(workspaceId, secretNames);
    }
    const config: SandboxConfig = { ...input, secret: randomBytes(24).toString("hex") };
    const id = randomUUID();
    const containerId = randomUUID();
    const expiresAt = config.ttlSeconds < 0 ? null : new Date(Date.now() + config.ttlSeconds * 1000).toISOString();
    const record = await this.o.store.sandboxes.create({ id, workspaceId, containerId, config, expiresAt });
    this.live.set(containerId, { sandboxId: id, origin: null, ready: false, waiters: [], probing: false });
    this.o.scheduler.submit({
      containerId, workspaceId, stubId: null, imageId: config.imageId, command: ["sandbox"],
      env: { ...config.env, ...(secretNames.length > 0 && this.o.secrets?.env(workspaceId, secretNames)), [SANDBOX_ID_ENV]: id, [SANDBOX_SECRET_ENV]: config.secret! }, cpuMillicores: config.cpuMillicores, memoryMiB: config.memoryMiB,
      gpu: [], gpuCount: 0, ports: [SANDBOX_PORT], pool: config.pool, daemon: "sandbox",
      ...(config.volumes?.length && { volumes: config.volumes }),
      ...(config.egress && { egress: config.egress }),
    }, `sandbox ${id}`);
    this.o.logger?.info({ sandboxId: id, containerId, expiresAt }, "sandbox created");
    return record;
  }

  /** The container behind the sandbox, if the gateway knows it (live registry). */
  container(record: SandboxRecord): ContainerRecord | undefined {
    return this.o.scheduler.containers.get(record.containerId);
  }

  /**
   * The daemon's origin (http://host:port) once the sandbox runs; waits (bounded) while it starts.
   * An ended sandbox is a 409 SANDBOX_NOT_RUNNING.
   */
  async origin(record: SandboxRecord): Promise<string> {
    if (record.state === "TERMINATED") throw notRunning(record);
    const live = this.track(record);
    if (live.ready && live.origin) return live.origin;
    const container = this.container(record);
    if (container) await this.onContainer(container);
    if (live.ready && live.origin) return live.origin;
    const timeoutMs = this.o.readyTimeoutMs ?? 120_000;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        live.waiters.splice(live.waiters.indexOf(waiter), 1);
        const waiting = this.container(record);
        const why = waiting?.state === "PENDING" && waiting.workerId === null ? `no worker had room for it (${waiting.message ?? "cpu/memory"}); terminate other sandboxes or ask for less` : "see beta9 container list --all";
        reject(new Beta9Error("UNAVAILABLE", { reason: `sandbox ${record.id} did not start within ${Math.round(timeoutMs / 1000)} s: ${why}` }));
      }, timeoutMs);
      const waiter = {
        resolve: (origin: string) => (clearTimeout(timer), resolve(origin)),
        reject: (err: Error) => (clearTimeout(timer), reject(err)),
      };
      live.waiters.push(waiter);
    });
  }

  async terminate(record: SandboxRecord, reason: SandboxEndReason = "terminated"): Promise<void> {
    await this.o.store.sandboxes.markTerminated(record.id, reason);
    this.end(record.containerId, record.id, reason);
  }

  /** New lifetime from now; -1: until terminated. */
  async updateTtl(record: SandboxRecord, ttlSeconds: number): Promise<void> {
    if (record.state === "TERMINATED") throw notRunning(record);
    const expiresAt = ttlSeconds < 0 ? null : new Date(Date.now() + ttlSeconds * 1000).toISOString();
    await this.o.store.sandboxes.setConfig(record.id, { ...record.config, ttlSeconds });
    await this.o.store.sandboxes.setExpiry(record.id, expiresAt);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.reaper);
    this.unsubscribe();
    for (const live of this.live.values()) {
      dropDaemonPool(live.origin);
      for (const w of live.waiters.splice(0)) w.reject(new Beta9Error("UNAVAILABLE", { reason: "the gateway is shutting down" }));
    }
  }

  private track(record: SandboxRecord): Live {
    let live = this.live.get(record.containerId);
    if (!live) this.live.set(record.containerId, (live = { sandboxId: record.id, origin: null, ready: false, waiters: [], probing: false }));
    return live;
  }

  private end(containerId: string, sandboxId: string, reason: string): void {
    const live = this.live.get(containerId);
    this.live.delete(containerId);
    // Unless a newer sandbox at the same address already uses the pool (its end came late).
    if (live?.origin && ![...this.live.values()].some((other) => other.origin === live.origin)) dropDaemonPool(live.origin);
    for (const w of live?.waiters.splice(0) ?? []) {
      w.reject(new Beta9Error("SANDBOX_NOT_RUNNING", { id: sandboxId, state: "TERMINATED", reason }));
    }
    const container = this.o.scheduler.containers.get(containerId);
    if (container?.state === "PENDING" || container?.state === "RUNNING") this.o.scheduler.stop(containerId);
  }

  private async onContainer(container: ContainerRecord): Promise<void> {
    if (container.request.daemon !== "sandbox" || this.closed) return;
    const sandboxId = container.request.env[SANDBOX_ID_ENV];
    let live = this.live.get(container.id);
    if (!live) {
      // Not known to this gateway process (it restarted): look the sandbox up.
      const record = sandboxId === undefined ? undefined : await this.o.store.sandboxes.getAny(sandboxId);
      // Only the container the sandbox names, of its workspace: a worker reports its own containers
      // (a machine any it likes), and one merely claiming a sandbox's id must not end or reroute it.
      if (record && (record.containerId !== container.id || record.workspaceId !== container.workspaceId || record.workspaceId !== container.request.workspaceId)) {
        this.o.logger?.warn({ sandboxId, containerId: container.id, workerId: container.workerId }, "a container claims a sandbox that is not its own");
        if (container.state === "PENDING" || container.state === "RUNNING") this.o.scheduler.stop(container.id);
        return;
      }
      if (!record || record.state === "TERMINATED") {
        // Stopping emits a STOPPING event that comes back here: stop only what still runs.
        if (container.state === "PENDING" || container.state === "RUNNING") this.o.scheduler.stop(container.id);
        return;
      }
      live = this.track(record);
    }
    if (container.state === "EXITED") {
      const reason: SandboxEndReason = container.reason === "worker_lost" ? "worker_lost" : container.reason === "exited" || container.reason === "oom" ? "exited" : "failed";
      if (await this.o.store.sandboxes.markTerminated(live.sandboxId, reason)) {
        this.o.logger?.info({ sandboxId: live.sandboxId, reason, message: container.message }, "sandbox ended");
      }
      this.end(container.id, live.sandboxId, reason);
      return;
    }
    const address = container.ports[String(SANDBOX_PORT)];
    if (container.state === "RUNNING" && address && !live.ready && !live.probing) {
      live.origin = `http://${address.host}:${address.port}`;
      // Sockets kept to an earlier sandbox at this address (one whose end is not seen yet) are not this one's.
      dropDaemonPool(live.origin);
      live.probing = true;
      this.probe(container.id, live).catch((err: unknown) => {
        live.probing = false;
        this.o.logger?.error({ err, sandboxId: live.sandboxId }, "sandbox readiness check failed");
      });
    }
  }

  /** Polls the daemon's /health until it answers, then serves the waiters. */
  private async probe(containerId: string, live: Live): Promise<void> {
    const deadline = Date.now() + (this.o.readyTimeoutMs ?? 120_000);
    while (this.live.get(containerId) === live && Date.now() < deadline && !this.closed) {
      const ok = await request(`${live.origin}/health`, { dispatcher: daemonPool(live.origin!), headersTimeout: 2000, bodyTimeout: 2000 })
        .then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
      if (ok) {
        live.ready = true;
        await this.o.store.sandboxes.markRunning(live.sandboxId);
        for (const w of live.waiters.splice(0)) w.resolve(live.origin!);
        return;
      }
      await new Promise((r) => setTimeout(r, 3));
    }
    live.probing = false;
  }

  /** Ends expired sandboxes; declares lost those whose container never came back after a restart. */
  private async reap(): Promise<void> {
    const now = new Date().toISOString();
    for (const record of await this.o.store.sandboxes.expired(now)) {
      this.o.logger?.info({ sandboxId: record.id, expiresAt: record.expiresAt }, "sandbox expired");
      await this.terminate(record, "expired");
    }
    if (Date.now() - this.startedAt < (this.o.lostAfterMs ?? 90_000)) return;
    for (const record of await this.o.store.sandboxes.live()) {
      if (this.container(record) || this.live.get(record.containerId)?.origin) continue;
      if (Date.now() - Date.parse(record.createdAt) < (this.o.lostAfterMs ?? 90_000)) continue;
      await this.terminate(record, "worker_lost");
    }
  }
}

function notRunning(record: SandboxRecord): Beta9Error {
  return new Beta9Error("SANDBOX_NOT_RUNNING", { id: record.id, state: record.state, reason: record.reason ?? "ended" });
}
