/**
 * The scheduler: turns container requests into placements on connected workers and keeps the
 * workers' books. Placement runs synchronously on the event loop, so requests that arrive at
 * once are placed one after another against up-to-date reservations: a worker's reported
 * capacity is never oversubscribed. A request that fits nowhere waits in a backlog that retries
 * with backoff (and at once when capacity appears) and fails with the reason after a bound.
 */
import { checkQuota, DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { ContainerRequest, ContainerStateReport, GatewayMessage, WorkerCapacity } from "@beta9/protocol";
import type { ContainerRecord, ContainerRegistry } from "./containers.js";
import { neverFits, place, type Demand, type PlacementCandidate } from "./placement.js";

export interface ConnectedWorker {
  id: string;
  hostname: string;
  pool: string;
  /** A machine's worker runs only its owner workspace's containers; other workers run every workspace's. */
  workspaceId?: string;
  runtime: "runc" | "process";
  isolates: boolean;
  /** The operator let this non-isolating worker run containers anyway (`--allow-unisolated`). */
  allowUnisolated?: boolean;
  /** The worker enforces blockNetwork/allowList (its hello said so). */
  filtersEgress?: boolean;
  capacity: WorkerCapacity;
  connected: boolean;
  cordoned: boolean;
  lastSeenAt: number;
  send(message: GatewayMessage): void;
  close(reason: string): void;
}

export interface SchedulerOptions {
  /** A worker silent this long is dropped and its containers are lost (default 60 s). */
  workerTimeoutMs?: number;
  /** A request still unplaced after this long fails as unschedulable (default 10 min). */
  backlogTimeoutMs?: number;
  /** First retry delay of a backlogged request; doubles up to 5 s (default 100 ms). */
  backlogRetryMs?: number;
  /** Per-workspace limits; `containers` is checked on every submit (default DEFAULT_QUOTAS). */
  quotas?: WorkspaceQuotas;
  logger?: Logger;
}

interface BacklogEntry {
  id: string;
  since: number;
  attempts: number;
  nextAt: number;
  lastReason: string;
}

export class Scheduler {
  readonly events = new EventEmitter();
  private readonly workers = new Map<string, ConnectedWorker>();
  private readonly backlog = new Map<string, BacklogEntry>();
  private readonly workerTimeoutMs: number;
  private readonly backlogTimeoutMs: number;
  private readonly backlogRetryMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout;

  constructor(readonly containers: ContainerRegistry, private readonly options: SchedulerOptions = {}) {
    this.workerTimeoutMs = options.workerTimeoutMs ?? 60_000;
    this.backlogTimeoutMs = options.backlogTimeoutMs ?? 10 * 60_000;
    this.backlogRetryMs = options.backlogRetryMs ?? 100;
    this.sweeper = setInterval(() => this.sweep(), Math.min(5000, Math.max(50, this.workerTimeoutMs / 4)));
    this.sweeper.unref();
  }

  /** Accepts a request: placed now if something fits, else backlogged. */
  /** Throws QUOTA_EXCEEDED (nothing recorded) when the workspace already runs its most containers. */
  submit(request: ContainerRequest): ContainerRecord {
    checkQuota(this.options.quotas ?? DEFAULT_QUOTAS, "containers", this.containers.active(request.workspaceId));
    const record = this.containers.create(request);
    if (!this.tryPlace(record)) {
      this.backlog.set(record.id, { id: record.id, since: Date.now(), attempts: 0, nextAt: Date.now() + this.backlogRetryMs, lastReason: "" });
      this.armTimer();
    }
    return record;
  }

  stop(id: string, graceMs?: number): void {
    const record = this.containers.get(id);
    if (!record || record.state === "EXITED") return;
    if (this.backlog.delete(id) || record.workerId === null) {
      this.containers.apply({ containerId: id, state: "EXITED", reason: "stopped", exitCode: null, message: "stopped before it was placed" });
      return;
    }
    this.containers.apply({ containerId: id, state: "STOPPING" });
    this.workers.get(record.workerId)?.send({ type: "container.stop", containerId: id, ...(graceMs !== undefined && { graceMs }) });
  }

  /** Registers a worker (or a reconnect of a known one) and resyncs the containers it still runs. */
  connect(worker: ConnectedWorker, running: (ContainerStateReport & { request: ContainerRequest })[]): void {
    const previous = this.workers.get(worker.id);
    if (previous?.connected) previous.close("replaced by a new connection of the same worker");
    this.workers.set(worker.id, worker);
    const reported = new Set<string>();
    for (const report of running) {
      reported.add(report.containerId);
      const known = this.containers.get(report.containerId);
      // Already given up for lost (its work was rescheduled): an orphan now, so it is stopped.
      if (known?.state === "EXITED" && report.state !== "EXITED") {
        worker.send({ type: "container.stop", containerId: report.containerId });
        continue;
      }
      if (!known) this.containers.create(report.request, "PENDING");
      this.containers.apply({ ...report, workerId: worker.id });
    }
    // Containers placed there that the worker does not report: a placement sent while the link was
    // down is sent again; one that had started died with the worker's previous life.
    for (const record of this.containers.list({ workerId: worker.id, active: true })) {
      if (reported.has(record.id)) continue;
      if (record.state === "PENDING") worker.send({ type: "container.run", request: record.request });
      else this.containers.apply({ containerId: record.id, state: "EXITED", reason: "worker_lost", exitCode: null, message: "the worker restarted without it" });
    }
    this.options.logger?.info({ workerId: worker.id, pool: worker.pool, capacity: worker.capacity, runtime: worker.runtime }, "worker connected");
    this.events.emit("worker", worker.id);
    this.drainBacklog();
  }

  /** The connection closed; the worker keeps its containers until it times out or reconnects. */
  disconnect(workerId: string, worker: ConnectedWorker): void {
    if (this.workers.get(workerId) === worker) worker.connected = false;
  }

  seen(workerId: string): void {
    const worker = this.workers.get(workerId);
    if (worker) worker.lastSeenAt = Date.now();
  }

  report(workerId: string, report: ContainerStateReport): void {
    const record = this.containers.get(report.containerId);
    if (!record || record.workerId !== workerId) return;
    this.containers.apply(report);
    if (report.state === "EXITED") this.drainBacklog();
  }

  listWorkers(): (ConnectedWorker & { reserved: PlacementCandidate["reserved"]; containers: number })[] {
    return [...this.workers.values()].map((w) => ({
      ...w, reserved: this.reservedOn(w.id), containers: this.containers.list({ workerId: w.id, active: true }).length,
    }));
  }

  /** One worker's connection and active container count, without computing every worker's books. */
  workerState(workerId: string): { connected: boolean; containers: number } | undefined {
    const worker = this.workers.get(workerId);
    if (!worker) return undefined;
    return { connected: worker.connected, containers: this.containers.list({ workerId, active: true }).length };
  }

  /**
   * Drain: cordon, then stop every container there with `graceMs`, so the autoscaler replaces them
   * elsewhere and the dispatcher retries tasks they were running. Returns how many were stopped.
   */
  drain(workerId: string, graceMs?: number): number {
    if (!this.setCordoned(workerId, true)) return 0;
    const active = this.containers.list({ workerId, active: true }).filter((r) => r.state !== "STOPPING");
    for (const record of active) this.stop(record.id, graceMs);
    return active.length;
  }

  /** Forgets a worker now (deleted or expired machine): closes it and its containers are lost. */
  remove(workerId: string, why: string): boolean {
    const worker = this.workers.get(workerId);
    if (!worker) return false;
    this.drop(workerId, worker, why);
    return true;
  }

  setCordoned(workerId: string, cordoned: boolean): boolean {
    const worker = this.workers.get(workerId);
    if (!worker) return false;
    worker.cordoned = cordoned;
    if (!cordoned) this.drainBacklog();
    return true;
  }

  close(): void {
    clearInterval(this.sweeper);
    if (this.timer) clearTimeout(this.timer);
    for (const worker of this.workers.values()) worker.close("gateway shutting down");
  }

  private reservedOn(workerId: string): PlacementCandidate["reserved"] {
    const reserved = { cpuMillicores: 0, memoryMiB: 0, gpus: {} as Record<string, number> };
    for (const r of this.containers.list({ workerId, active: true })) {
      reserved.cpuMillicores += r.request.cpuMillicores;
      reserved.memoryMiB += r.request.memoryMiB;
      if (r.gpuType) reserved.gpus[r.gpuType] = (reserved.gpus[r.gpuType] ?? 0) + r.request.gpuCount;
    }
    return reserved;
  }

  /** Why no connected worker could ever run this demand (see placement.neverFits), or undefined. */
  neverFits(demand: Demand): string | undefined {
    return neverFits(this.candidates(), demand);
  }

  private candidates(): PlacementCandidate[] {
    return [...this.workers.values()].map((w) => ({
      workerId: w.id, pool: w.pool, schedulable: w.connected && !w.cordoned, capacity: w.capacity, reserved: this.reservedOn(w.id),
      mayRunUntrusted: w.isolates || w.allowUnisolated === true, filtersEgress: w.filtersEgress === true,
      ...(w.workspaceId !== undefined && { workspaceId: w.workspaceId }),
    }));
  }

  private tryPlace(record: ContainerRecord): boolean {
    const result = place(this.candidates(), record.request);
    if (result.workerId === null) {
      const entry = this.backlog.get(record.id);
      if (entry) entry.lastReason = result.reason;
      else record.message = result.reason;
      return false;
    }
    // The worker maps the chosen GPU type to device nodes; the workload can read it too.
    if (result.gpuType) record.request.env.BETA9_GPU_TYPE = result.gpuType;
    record.gpuType = result.gpuType;
    record.workerId = result.workerId;
    record.message = null;
    this.workers.get(result.workerId)!.send({ type: "container.run", request: record.request });
    this.events.emit("placed", record.id, result.workerId);
    return true;
  }

  private drainBacklog(): void {
    const now = Date.now();
    for (const entry of this.backlog.values()) entry.nextAt = Math.min(entry.nextAt, now);
    this.processBacklog();
  }

  private processBacklog(): void {
    const now = Date.now();
    for (const entry of [...this.backlog.values()]) {
      if (entry.nextAt > now) continue;
      const record = this.containers.get(entry.id);
      if (!record || record.state === "EXITED") {
        this.backlog.delete(entry.id);
        continue;
      }
      if (this.tryPlace(record)) {
        this.backlog.delete(entry.id);
      } else if (now - entry.since >= this.backlogTimeoutMs) {
        this.backlog.delete(entry.id);
        this.containers.apply({ containerId: entry.id, state: "EXITED", reason: "unschedulable", exitCode: null,
          message: `not placed within ${Math.round(this.backlogTimeoutMs / 1000)} s: ${entry.lastReason}` });
      } else {
        entry.attempts += 1;
        entry.nextAt = now + Math.min(5000, this.backlogRetryMs * 2 ** entry.attempts);
      }
    }
    this.armTimer();
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.backlog.size === 0) return;
    const next = Math.min(...[...this.backlog.values()].map((e) => Math.min(e.nextAt, e.since + this.backlogTimeoutMs)));
    this.timer = setTimeout(() => this.processBacklog(), Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  /** Drops workers silent past the timeout; their containers are lost. */
  private sweep(): void {
    const now = Date.now();
    for (const [id, worker] of this.workers) {
      if (now - worker.lastSeenAt < this.workerTimeoutMs) continue;
      this.options.logger?.warn({ workerId: id }, "worker timed out");
      this.drop(id, worker, `worker ${id} sent nothing for ${Math.round(this.workerTimeoutMs / 1000)} s`);
    }
  }

  private drop(id: string, worker: ConnectedWorker, why: string): void {
    this.workers.delete(id);
    worker.close(why);
    for (const record of this.containers.list({ workerId: id, active: true })) {
      this.containers.apply({ containerId: record.id, state: "EXITED", reason: "worker_lost", exitCode: null, message: why });
    }
    this.events.emit("worker_lost", id);
  }
}
