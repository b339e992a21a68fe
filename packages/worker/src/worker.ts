/**
 * The worker: dials out to the gateway, keeps one WebSocket (reconnecting with exponential
 * backoff and jitter), reports capacity and keepalives, runs the containers the scheduler places
 * here, and streams their state and log lines back. Needs no inbound port.
 */
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import WebSocket from "ws";
import {
  CODE_MOUNT_PATH, pinnedTlsOptions, WORKER_CONNECT_PATH, type ContainerRequest, type ContainerStateReport, type GatewayMessage, type LogLine,
  type WorkerCapacity, type WorkerMessage, untagLogLine,
} from "@beta9/protocol";
import { detectCapacity } from "./capacity.js";
import { HOST_USR_MOUNT, ensureHostRootfs } from "./host-rootfs.js";
import { RUNNER_MOUNT_PATH, type RunnerBundle } from "./runner-bundle.js";
import { buildImage, type BuildCredentials } from "./build.js";
import { CodeCache } from "./code-cache.js";
import { gatewayEndpoint, sha256OfFile, uploadImage, type GatewayEndpoint } from "./gateway-http.js";
import { GatewayRotation, parseGatewayUrls, watchLiveness, watchPrimary } from "./gateway-list.js";
import { openTunnel } from "./tunnel.js";
import { openShellSession } from "./shell/session.js";
import type { ContainerHandle, ContainerSpec, Runtime } from "./runtime/types.js";
import { DeviceAllocator } from "./devices/allocator.js";
import { VolumeMounts } from "./volumes/mounts.js";
import type { DeviceGroup } from "./devices/types.js";

/** Where a packed image is mounted for use as a lower dir; provided by the image cache. */
export interface ImageProvider {
  acquire(imageId: string): Promise<{ lowerDir: string; release(): void | Promise<void> }>;
}

export interface WorkerOptions {
  /** One gateway, or several (a list or comma-separated) tried in turn: see gateway-list.ts. */
  gatewayUrl: string | readonly string[];
  /** Where HTTP calls go (code, images, volumes); its `url` follows the gateway this worker is connected to. Made here when not given. */
  endpoint?: GatewayEndpoint;
  token: string;
  /** The gateway's own certificate (PEM) to trust on its https:// and wss:// URLs (`beta9 up --tls`). */
  tlsCa?: string;
  runtime: Runtime;
  stateDir: string;
  logger: Logger;
  workerId?: string;
  pool?: string;
  capacity?: Partial<WorkerCapacity>;
  images?: ImageProvider;
  /** Mounted read-only at /beta9 in every isolated container (the runner and its own Node). */
  runner?: RunnerBundle;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How often a worker on another gateway checks whether the first one answers again (default 30 s). */
  primaryCheckMs?: number;
  version?: string;
  /**
   * Whether the gateway can dial the container addresses this worker reports. Unset: the gateway
   * decides (worker tokens: yes; machine tokens: no, and it tunnels over this worker's connection).
   */
  reachable?: boolean;
  /**
   * Run containers although the runtime isolates nothing (the process runtime): only for clusters
   * whose every workload, sandbox and image author is trusted. Without it, the gateway places
   * nothing on a non-isolating worker. Ignored by isolating runtimes.
   */
  allowUnisolated?: boolean;
  /** Image builds may pull from loopback, link-local or private registries (default: BETA9_ALLOW_PRIVATE_REGISTRIES=1). */
  allowPrivateRegistries?: boolean;
  /** Detected accelerators (devices/detectDevices): capacity's GPUs and what GPU containers get. */
  devices?: DeviceGroup[];
}

/** What an observer (b9agent's TUI and metrics) sees of one container. */
export interface WorkerContainerInfo {
  containerId: string;
  stubId: string | null;
  command: string[];
  state: ContainerStateReport;
  gpuIndices: number[];
  /** Unix ms: placed on this worker, and (once EXITED) ended. */
  createdAt: number;
  endedAt?: number;
}

/** "container": a container changed state; "log": one of its lines. */
export interface WorkerEvents {
  container: [WorkerContainerInfo];
  log: [string, LogLine];
}

interface LocalContainer {
  request: ContainerRequest;
  state: ContainerStateReport;
  handle?: ContainerHandle;
  pendingLines: LogLine[];
  /** Characters in pendingLines: a batch is bounded by size too, not only by count. */
  pendingChars?: number;
  flushTimer?: NodeJS.Timeout;
  createdAt: number;
  endedAt?: number;
  gpuIndices: number[];
}

/** What an image declares (written into it at build time): its env, and its registry base's command and workdir. */
interface ImageMeta {
  env?: Record<string, string>;
  command?: string[];
  workdir?: string;
}

async function imageMeta(lowerDir: string): Promise<ImageMeta> {
  try {
    return JSON.parse(await readFile(join(lowerDir, ".beta9", "image.json"), "utf8")) as ImageMeta;
  } catch {
    return {};
  }
}

/** A pod without an entrypoint runs what its image says (ENTRYPOINT + CMD, in its WORKDIR). */
function useImageCommand(spec: ContainerSpec, meta: ImageMeta): void {
  if (!Array.isArray(meta.command) || meta.command.length === 0) {
    throw new Error("the image declares no ENTRYPOINT or CMD; give the pod an entrypoint (beta9 pod deploy … -- CMD, or Pod({ entrypoint }))");
  }
  spec.command = meta.command;
  if (typeof meta.workdir === "string") spec.workdir = meta.workdir;
}

const LOG_FLUSH_MS = 20;
const LOG_BATCH_LINES = 500;
/**
 * Longest log line sent as one; a longer one goes as several lines, nothing dropped. With
 * LOG_BATCH_CHARS it keeps every message far below the gateway's 4 MiB limit (JSON escaping can
 * grow a character to six bytes), so one container's output can never cut its worker's connection.
 */
export const MAX_LOG_LINE_CHARS = 16 * 1024;
const LOG_BATCH_CHARS = 256 * 1024;

/** `line` in pieces of at most `max` characters (a surrogate pair is never cut in two). */
export function splitLogLine(line: string, max = MAX_LOG_LINE_CHARS): string[] {
  if (line.length <= max) return [line];
  const pieces: string[] = [];
  for (let i = 0; i < line.length;) {
    let end = Math.min(i + max, line.length);
    const last = line.charCodeAt(end - 1);
    if (end < line.length && last >= 0xd800 && last <= 0xdbff) end -= 1;
    pieces.push(line.slice(i, end));
    i = end;
  }
  return pieces;
}
const OUTBOX_LIMIT = 10_000;
const PRIMARY_CHECK_MS = 30_000;
const LIVENESS_PING_MS = 3000;
/** The CPU a runner container starts on (see ContainerSpec.startupBurstMillicores); BETA9_STARTUP_BURST=0 turns it off. */
const STARTUP_BURST_MILLICORES = process.env.BETA9_STARTUP_BURST === "0" ? 0 : 1000;

export class Worker {
  readonly id: string;
  private readonly capacity: WorkerCapacity;
  private readonly containers = new Map<string, LocalContainer>();
  private readonly outbox: WorkerMessage[] = [];
  private readonly code: CodeCache;
  private ws: WebSocket | undefined;
  private welcomed = false;
  private closing = false;
  private readonly rotation: GatewayRotation;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  /** Stops the watchers of the connection in use (liveness, the first gateway's return). */
  private unwatch: (() => void) | undefined;
  /** Set while leaving a gateway for the first one, which answers again. */
  private returning = false;
  private lastError: string | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectedOnce: { resolve: () => void; promise: Promise<void> };
  private readonly gpus: DeviceAllocator;
  /** For observers in the same process; the gateway learns the same through the WebSocket. */
  readonly events = new EventEmitter<WorkerEvents>();

  private readonly gateway: GatewayEndpoint;
  private readonly volumes: VolumeMounts;

  constructor(private readonly options: WorkerOptions) {
    this.id = options.workerId ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
    this.capacity = detectCapacity(options.capacity, options.devices);
    this.gpus = new DeviceAllocator(options.devices ?? []);
    this.rotation = new GatewayRotation(parseGatewayUrls(options.gatewayUrl), options.reconnectMinMs ?? 250, options.reconnectMaxMs ?? 30_000);
    this.gateway = options.endpoint ?? gatewayEndpoint(this.rotation.current, options.token, options.tlsCa);
    this.code = new CodeCache(join(options.stateDir, "code"), this.gateway);
    this.volumes = new VolumeMounts({
      stateDir: options.stateDir, gateway: this.gateway, logger: options.logger, owner: () => (options.runtime as { rootOwner?: number }).rootOwner,
    });
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.connectedOnce = { resolve, promise };
  }

  /** Starts dialling; resolves once the gateway has welcomed this worker the first time. */
  start(): Promise<void> {
    void this.code.init().catch((err: unknown) => this.options.logger.warn({ err }, "could not clean the code cache"));
    void this.volumes.start().catch((err: unknown) => this.options.logger.warn({ err }, "could not prepare the volume cache"));
    this.dial();
    return this.connectedOnce.promise;
  }

  get connected(): boolean {
    return this.welcomed;
  }

  /** Containers this worker knows (running, and exited ones for a minute after). */
  listContainers(): WorkerContainerInfo[] {
    return [...this.containers.values()].map((c) => this.info(c));
  }

  /** Accelerators on this machine and how many no container holds. */
  gpuUsage(): { total: number; free: number } {
    return this.gpus.usage();
  }

  private info(c: LocalContainer): WorkerContainerInfo {
    return {
      containerId: c.request.containerId, stubId: c.request.stubId, command: c.request.command, state: c.state,
      gpuIndices: c.gpuIndices, createdAt: c.createdAt, ...(c.endedAt !== undefined && { endedAt: c.endedAt }),
    };
  }

  private dial(): void {
    if (this.closing) return;
    const url = new URL(WORKER_CONNECT_PATH, this.rotation.current);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${this.options.token}` }, handshakeTimeout: 10_000, ...(this.options.tlsCa && pinnedTlsOptions(this.options.tlsCa)),
    });
    this.ws = ws;
    ws.on("open", () => this.send({
      type: "hello", workerId: this.id, hostname: hostname(), pool: this.options.pool ?? "default", runtime: this.options.runtime.name,
      isolates: this.options.runtime.isolates, capacity: this.capacity, version: this.options.version ?? "0",
      containers: [...this.containers.values()].filter((c) => c.state.state !== "EXITED").map((c) => ({ ...c.state, request: c.request })),
      ...(this.options.reachable !== undefined && { reachable: this.options.reachable }),
      ...(this.options.allowUnisolated === true && !this.options.runtime.isolates && { allowUnisolated: true }),
      // runc filters each container's egress (runtime/runc/egress.ts); the process runtime cannot.
      ...(this.options.runtime.isolates && { filtersEgress: true }),
    }, true));
    ws.on("message", (data) => this.onMessage(JSON.parse(String(data)) as GatewayMessage));
    ws.on("unexpected-response", (_req, res) => {
      const hint = res.statusCode === 409 ? "its machine must register first" : "check the token";
      this.options.logger.error({ status: res.statusCode }, `the gateway refused this worker (${hint}); retrying`);
      // With this listener ws keeps the failed handshake open: end it so "close" fires and the backoff
      // retries (an expired machine's worker is accepted again once its agent has registered).
      ws.terminate();
    });
    ws.on("error", (err) => {
      this.lastError = err.message;
      this.options.logger.debug({ err: err.message }, "worker connection error");
    });
    ws.on("close", () => this.onClose(ws));
  }

  private onClose(ws: WebSocket): void {
    if (this.ws !== ws) return;
    this.welcomed = false;
    clearInterval(this.keepaliveTimer);
    if (this.closing) return;
    this.unwatch?.();
    this.unwatch = undefined;
    if (this.returning) {
      this.returning = false;
      this.rotation.toFirst();
      this.options.logger.info({ gateway: this.rotation.current }, "the first gateway answers again; moving back to it");
      this.reconnectTimer = setTimeout(() => this.dial(), 0);
      return;
    }
    const lost = this.rotation.current;
    const delay = this.rotation.failed();
    this.options.logger.warn(
      { gateway: lost, ...(this.lastError && { error: this.lastError }), next: this.rotation.current, delayMs: Math.round(delay), attempt: this.rotation.attempts },
      this.rotation.urls.length > 1 ? "gateway connection lost; trying the next gateway" : "gateway connection lost; reconnecting",
    );
    this.lastError = undefined;
    this.reconnectTimer = setTimeout(() => this.dial(), delay);
  }

  /** Watches the welcomed connection: a silent gateway is left; on a standby, the first gateway's return. */
  private watch(keepaliveMs: number): void {
    const ws = this.ws;
    if (!ws) return;
    this.unwatch?.();
    // Pings at least every 3 s: a silent gateway is left within ~9 s (the bound is 10 s).
    const stops = [watchLiveness(ws, Math.min(keepaliveMs, LIVENESS_PING_MS))];
    const first = this.rotation.urls[0]!;
    if (this.rotation.current !== first) {
      stops.push(watchPrimary(first, this.gateway.dispatcher, this.options.primaryCheckMs ?? PRIMARY_CHECK_MS, () => {
        if (this.ws !== ws || this.closing) return;
        this.returning = true;
        ws.close(1000, "moving back to the first gateway");
      }));
    }
    this.unwatch = () => stops.forEach((stop) => stop());
  }

  private onMessage(message: GatewayMessage): void {
    switch (message.type) {
      case "welcome":
        this.welcomed = true;
        this.rotation.connected();
        if (this.gateway.url !== this.rotation.current) {
          this.options.logger.info({ gateway: this.rotation.current, was: this.gateway.url }, "connected to another gateway");
          this.gateway.url = this.rotation.current;
        }
        clearInterval(this.keepaliveTimer);
        this.keepaliveTimer = setInterval(() => this.send({ type: "keepalive", running: this.running() }), message.keepaliveMs);
        this.keepaliveTimer.unref();
        this.watch(message.keepaliveMs);
        for (const queued of this.outbox.splice(0)) this.send(queued);
        this.connectedOnce.resolve();
        return;
      case "container.run":
        void this.run(message.request);
        return;
      case "container.stop":
        void this.stop(message.containerId, message.graceMs);
        return;
      case "image.build":
        void this.build(message.imageId, message.spec, message.credentials);
        return;
      case "tunnel.open":
        this.tunnel(message.streamId, message.containerId, message.port);
        return;
      case "shell.open":
        openShellSession({
          ...this.options, gatewayUrl: this.gateway.url, running: (id) => this.containers.get(id)?.state.state === "RUNNING", fail: (streamId, why) => this.send({ type: "tunnel.failed", streamId, message: why }),
        }, message);
        return;
      case "error":
        this.options.logger.error({ code: message.code }, message.message);
        return;
      default:
        this.options.logger.warn({ message }, "unknown message from the gateway");
    }
  }

  /** Sends now, or queues until the next welcome (bounded: the oldest are dropped). */
  private send(message: WorkerMessage, beforeWelcome = false): void {
    if (this.ws?.readyState === WebSocket.OPEN && (this.welcomed || beforeWelcome)) {
      this.ws.send(JSON.stringify(message));
      return;
    }
    if (message.type === "keepalive" || message.type === "hello") return;
    this.outbox.push(message);
    if (this.outbox.length > OUTBOX_LIMIT) this.outbox.shift();
  }

  private report(local: LocalContainer, state: Omit<ContainerStateReport, "containerId">): void {
    local.state = { ...local.state, ...state };
    if (state.state === "EXITED") local.endedAt ??= Date.now();
    this.events.emit("container", this.info(local));
    this.flushLogs(local);
    this.send({ type: "container.state", ...local.state });
  }

  private running(): number {
    return [...this.containers.values()].filter((c) => c.state.state !== "EXITED").length;
  }

  private async run(request: ContainerRequest): Promise<void> {
    if (this.containers.has(request.containerId)) {
      const known = this.containers.get(request.containerId)!;
      this.send({ type: "container.state", ...known.state });
      return;
    }
    const local: LocalContainer = {
      request, state: { containerId: request.containerId, state: "PENDING" }, pendingLines: [], createdAt: Date.now(), gpuIndices: [],
    };
    this.containers.set(request.containerId, local);
    this.events.emit("container", this.info(local));
    let image: { lowerDir: string; release(): void | Promise<void> } | undefined;
    try {
      // The process runtime runs on the host's filesystem: an image would not be used (nor mountable unprivileged).
      const useImage = request.imageId !== null && this.options.runtime.isolates;
      image = useImage ? await this.requireImages().acquire(request.imageId!) : undefined;
      const meta = image ? await imageMeta(image.lowerDir) : {};
      const spec = this.toSpec(request, image?.lowerDir, meta.env ?? {});
      if (request.imageCommand) useImageCommand(spec, meta);
      if (request.runner) await this.useRunner(spec, request.runner);
      if (request.daemon === "sandbox") this.useSandboxDaemon(spec);
      if (request.volumes?.length) await this.useVolumes(spec, request);
      if (request.gpuCount > 0) this.assignGpus(local, spec);
      local.handle = await this.options.runtime.start(spec, (stream, line) => this.log(local, { stream, line, at: Date.now() }));
      const ports = Object.fromEntries(Object.entries(local.handle.ports).map(([p, a]) => [p, a]));
      if (local.state.state === "PENDING") this.report(local, { state: "RUNNING", ports });
      else void local.handle.stop(); // a stop arrived while it was starting
      const exit = await local.handle.exited;
      // Volume changes are committed before EXITED is reported: whoever waits for that sees them.
      await this.volumes.detach(request.containerId, (line) => this.log(local, { stream: "stderr", line, at: Date.now() }));
      this.report(local, { state: "EXITED", exitCode: exit.exitCode, reason: exit.reason, ...(exit.message !== undefined && { message: exit.message }) });
    } catch (err) {
      await this.volumes.detach(request.containerId, (line) => this.log(local, { stream: "stderr", line, at: Date.now() }));
      this.report(local, { state: "EXITED", exitCode: null, reason: "failed", message: (err as Error).message });
    } finally {
      void image?.release();
      this.gpus.release(request.containerId);
      // Forget it once reported; a reconnect's hello only lists what still runs.
      setTimeout(() => this.containers.delete(request.containerId), 60_000).unref();
    }
  }

  /** Builds an image, uploads it, and reports; concurrent requests for one id build once. */
  private readonly builds = new Map<string, Promise<void>>();
  private build(imageId: string, spec: unknown, credentials?: BuildCredentials): Promise<void> {
    const existing = this.builds.get(imageId);
    if (existing) return existing;
    const lines: LogLine[] = [];
    let chars = 0;
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      chars = 0;
      if (lines.length > 0) this.send({ type: "image.logs", imageId, lines: lines.splice(0) });
    };
    // Bounded by count and size, as container logs: a build step's output cannot outgrow a message.
    const log = (line: string, stream: "stdout" | "stderr" = "stdout") => {
      for (const piece of splitLogLine(line)) {
        lines.push({ stream, line: piece, at: Date.now() });
        chars += piece.length;
        if (lines.length >= LOG_BATCH_LINES || chars >= LOG_BATCH_CHARS) flush();
      }
      if (lines.length > 0) timer ??= setTimeout(flush, 50);
    };
    // The image goes to the gateway that asked for it (its data dir keeps the blob), even if this worker moved meanwhile.
    const askedBy: GatewayEndpoint = { ...this.gateway };
    const job = (async () => {
      let built: Awaited<ReturnType<typeof buildImage>> | undefined;
      try {
        built = await buildImage(imageId, spec, {
          runtime: this.options.runtime, workDir: join(this.options.stateDir, "builds"), baseCacheDir: join(this.options.stateDir, "base-images"), log,
          fetchObject: (hash) => this.code.get(hash), ...(credentials && { credentials }),
          ...(this.options.allowPrivateRegistries !== undefined && { allowPrivateRegistries: this.options.allowPrivateRegistries }),
        });
        log("uploading to the gateway");
        await uploadImage(askedBy, imageId, built.path, await sha256OfFile(built.path));
        flush();
        this.send({ type: "image.result", imageId, ok: true });
      } catch (err) {
        log((err as Error).message, "stderr");
        flush();
        this.send({ type: "image.result", imageId, ok: false, error: (err as Error).message });
      } finally {
        await built?.cleanup();
        this.builds.delete(imageId);
      }
    })();
    this.builds.set(imageId, job);
    return job;
  }

  private async stop(containerId: string, graceMs?: number): Promise<void> {
    const local = this.containers.get(containerId);
    if (!local || local.state.state === "EXITED") return;
    this.report(local, { state: "STOPPING" });
    await local.handle?.stop(graceMs);
  }

  /** The gateway wants a connection to a container port it cannot dial: open it from here. */
  private tunnel(streamId: string, containerId: string, port: number): void {
    const target = this.containers.get(containerId)?.state.ports?.[String(port)];
    if (!target) {
      this.send({ type: "tunnel.failed", streamId, message: `container ${containerId} has no port ${port} here` });
      return;
    }
    openTunnel({
      gatewayUrl: this.gateway.url, token: this.options.token, streamId, target, logger: this.options.logger,
      ...(this.options.tlsCa && { tlsCa: this.options.tlsCa }),
    })
      .catch((err: unknown) => this.send({ type: "tunnel.failed", streamId, message: (err as Error).message }));
  }

  /** Replaces the command with the runner serving the request's code bundle. */
  private async useRunner(spec: ContainerSpec, runner: NonNullable<ContainerRequest["runner"]>): Promise<void> {
    const bundle = this.options.runner;
    if (!bundle) throw new Error("this worker has no runner bundle");
    const codeDir = await this.code.get(runner.codeObjectId);
    const isolated = this.options.runtime.isolates;
    if (isolated) spec.mounts = [...(spec.mounts ?? []), { source: codeDir, destination: CODE_MOUNT_PATH, readOnly: true }];
    spec.env = { ...spec.env, BETA9_CODE_DIR: isolated ? CODE_MOUNT_PATH : codeDir, BETA9_HANDLER: runner.handler, BETA9_CONCURRENCY: String(runner.concurrency) };
    this.startupBurst(spec);
    if (isPythonHandler(runner.handler)) {
      // Python workloads run on the image's python3 with the SDK's runner from the bundle.
      spec.command = ["python3", "-m", "beta9.runner"];
      spec.env = {
        ...spec.env, PYTHONPATH: isolated ? bundle.pythonPath : join(bundle.dir, "python"), PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1",
      };
      return;
    }
    spec.command = isolated ? [...bundle.nodeArgv, bundle.runnerPath] : [process.execPath, join(bundle.dir, "runner", "main.js")];
  }

  /**
   * A runner starts on up to one CPU until it says it is ready: Node's (and Python's) start-up
   * under a 0.125-CPU quota took 3-5× longer than under 1 CPU, for a few hundred ms of work. The
   * burst raises its quota only: its weight stays its share's (bundle.ts cpuShares), so under
   * contention its neighbours keep what they reserved and the burst runs on CPU they leave idle.
   * (Bursting only into unreserved CPU left ten 0.125-CPU runners starting together on a full
   * 2-CPU worker at their bare quota: ~4 s from RUNNING to ready.)
   */
  private startupBurst(spec: ContainerSpec): void {
    if (spec.cpuMillicores <= 0 || spec.cpuMillicores >= STARTUP_BURST_MILLICORES) return;
    const burst = Math.min(STARTUP_BURST_MILLICORES, this.capacity.cpuMillicores);
    if (burst > spec.cpuMillicores) spec.startupBurstMillicores = burst;
  }

  /** Specific devices for this container: their nodes (isolating runtimes) and the visible-devices env. */
  private assignGpus(local: LocalContainer, spec: ContainerSpec): void {
    const { request } = local;
    const isolated = this.options.runtime.isolates;
    if ((this.options.devices ?? []).length === 0 && this.options.capacity?.gpus !== undefined) {
      // GPUs declared by configuration, none detected (a simulated pool): nothing to pass through.
      this.options.logger.warn({ containerId: request.containerId }, "GPU container on a worker with declared but undetected GPUs; no devices passed");
      return;
    }
    // The scheduler names the type it counted this container against; honour it before the
    // request's own preference list so both sides agree on which GPUs are taken.
    const chosen = request.env.BETA9_GPU_TYPE;
    const types = chosen ? [chosen, ...request.gpu.filter((t) => t !== chosen)] : request.gpu;
    const assignment = this.gpus.allocate(request.containerId, types, request.gpuCount, isolated);
    local.gpuIndices = assignment.indices;
    if (isolated) spec.devices = [...(spec.devices ?? []), ...assignment.nodes];
    spec.env = { ...spec.env, ...assignment.env };
  }

  /** Mounts the request's volumes: the gateway's current version of each, changes committed at exit (volumes/mounts.ts). */
  private async useVolumes(spec: ContainerSpec, request: ContainerRequest): Promise<void> {
    if (!this.options.runtime.isolates) throw new Error("volumes need the runc runtime (the process runtime cannot mount)");
    const { mounts, env } = await this.volumes.attach(request);
    spec.mounts = [...(spec.mounts ?? []), ...mounts];
    spec.env = { ...spec.env, ...env };
  }

  /** Replaces the command with the sandbox daemon (see @beta9/runner sandbox/main.ts). */
  private useSandboxDaemon(spec: ContainerSpec): void {
    const bundle = this.options.runner;
    if (!bundle) throw new Error("this worker has no runner bundle");
    if (this.options.runtime.isolates) {
      spec.command = bundle.sandboxArgv;
      spec.env = { ...spec.env, BETA9_SANDBOX_ROOT: "/", BETA9_NODE_ARGV: JSON.stringify(bundle.nodeArgv) };
    } else {
      // No isolation: the daemon confines files to its working directory, the runtime's temp dir.
      spec.command = [process.execPath, join(bundle.dir, "runner", "sandbox", "main.js")];
    }
  }

  private requireImages(): ImageProvider {
    if (!this.options.images) throw new Error("this worker has no image cache; it runs only containers without an image");
    return this.options.images;
  }

  private toSpec(request: ContainerRequest, imageLowerDir: string | undefined, imageEnv: Record<string, string>): ContainerSpec {
    const hostRootfs = imageLowerDir === undefined;
    return {
      id: request.containerId,
      lowerDirs: [imageLowerDir ?? ensureHostRootfs(this.options.stateDir)],
      command: request.command,
      env: {
        PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", ...imageEnv, ...request.env,
        BETA9_CONTAINER_ID: request.containerId,
      },
      cpuMillicores: request.cpuMillicores,
      memoryMiB: request.memoryMiB,
      ports: request.ports,
      mounts: [
        ...(hostRootfs ? [HOST_USR_MOUNT] : []),
        ...(this.options.runner && this.options.runtime.isolates ? [{ source: this.options.runner.dir, destination: RUNNER_MOUNT_PATH, readOnly: true }] : []),
      ],
      ...(request.egress && { egress: request.egress }),
    };
  }

  private log(local: LocalContainer, read: LogLine): void {
    // A runner's tag says which task printed the line (protocol logs.ts): kept beside it, not in it.
    const { taskId, line: text } = untagLogLine(read.line);
    const line = taskId === undefined ? read : { ...read, line: text, taskId };
    for (const piece of splitLogLine(line.line)) {
      const part = piece === line.line ? line : { ...line, line: piece };
      this.events.emit("log", local.request.containerId, part);
      local.pendingLines.push(part);
      local.pendingChars = (local.pendingChars ?? 0) + piece.length;
      if (local.pendingLines.length >= LOG_BATCH_LINES || local.pendingChars >= LOG_BATCH_CHARS) this.flushLogs(local);
    }
    if (local.pendingLines.length > 0) local.flushTimer ??= setTimeout(() => this.flushLogs(local), LOG_FLUSH_MS);
  }

  private flushLogs(local: LocalContainer): void {
    clearTimeout(local.flushTimer);
    local.flushTimer = undefined;
    local.pendingChars = 0;
    if (local.pendingLines.length === 0) return;
    this.send({ type: "container.logs", containerId: local.request.containerId, lines: local.pendingLines.splice(0) });
  }

  /** Stops every container (graceMs each) and closes the connection. */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.keepaliveTimer);
    this.unwatch?.();
    await Promise.all([...this.containers.values()].map((c) => this.stop(c.request.containerId, graceMs)));
    await Promise.all([...this.containers.values()].map((c) => c.handle?.exited));
    await this.volumes.close();
    for (const c of this.containers.values()) this.flushLogs(c);
    await new Promise<void>((resolve) => {
      if (!this.ws || this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once("close", () => resolve());
      this.ws.close(1000, "worker shutting down");
      setTimeout(resolve, 2000).unref();
    });
  }
}

/** A handler in a .py file runs on the Python runner; anything else on the Node runner. */
export function isPythonHandler(handler: string): boolean {
  return handler.slice(0, handler.lastIndexOf(":")).endsWith(".py");
}
