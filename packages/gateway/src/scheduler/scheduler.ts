/**
 * The scheduler: turns container requests into placements on connected workers and keeps the
 * workers' books. Placement runs synchronously on the event loop, so requests that arrive at
 * once are placed one after another against up-to-date reservations: a worker's reported
 * capacity is never oversubscribed. A request that fits nowhere waits in a backlog that retries
 * with backoff (and at once when capacity appears) and fails with the reason after a bound.
 */
import { checkQuota, DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import type { Logger } from "pino";
import type { CapacityWait, ContainerRequest, ContainerStateReport, GatewayMessage, WorkerCapacity } from "@beta9/protocol";
import type { ContainerRecord, ContainerRegistry } from "./containers.js";
import { anyEligible, capacityShortfall, neverFits, place, type CapacityShortfall, type Demand, type PlacementCandidate } from "./placement.js";
import { reclaimPlan, without, type IdleContainer } from "./reclaim.js";
import { TypedEmitter } from "../events.js";

/** Who owns containers kept only warm (the autoscaler): which may stop early, and how to stop one. */
export interface Reclaimer {
  /** Containers idle only to stay warm, each with when it last served. */
  idle(): { id: string; lastUsedAt: number }[];
  /** Stops it (no new work may land on it). */
  stop(id: string): void;
}

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
  /** What waits: the stub (its containers wait as one), else the container itself. */
  key: string;
  /** Names it in the log (the stub's name). */
  label: string;
  since: number;
  attempts: number;
  nextAt: number;
  /** Why it was not placed at the last try. */
  shortfall: CapacityShortfall;
}

const waitOf = (shortfall: CapacityShortfall, since: number): CapacityWait => {
  const { reason, ...figures } = shortfall;
  return { message: `waiting for capacity: ${reason}`, ...figures, since: new Date(since).toISOString() };
};

/** What the scheduler tells the rest of the gateway (metrics, image builds, worker sockets). */
export interface SchedulerEvents {
  /** A container waits for capacity (its id): metrics time the wait until "placed". */
  waiting: string;
  placed: { containerId: string; workerId: string };
  /** A worker connected (its id). */
  worker: string;
  /** A worker went away (its id): what ran there is lost. */
  worker_lost: string;
}

const NO_RESERVATION: PlacementCandidate["reserved"] = { cpuMillicores: 0, memoryMiB: 0, gpus: {} };

export class Scheduler {
  readonly events = new TypedEmitter<SchedulerEvents>();
  private readonly workers = new Map<string, ConnectedWorker>();
  private readonly backlog = new Map<string, BacklogEntry>();
  private readonly workerTimeoutMs: number;
  private readonly backlogTimeoutMs: number;
  private readonly backlogRetryMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout;
  private reclaimer: Reclaimer | undefined;
  /** Idle containers asked to stop to make room; until they exit, their room counts as free. */
  private readonly reclaiming = new Set<string>();

  constructor(readonly containers: ContainerRegistry, private readonly options: SchedulerOptions = {}) {
    this.workerTimeoutMs = options.workerTimeoutMs ?? 60_000;
    this.backlogTimeoutMs = options.backlogTimeoutMs ?? 10 * 60_000;
    this.backlogRetryMs = options.backlogRetryMs ?? 100;
    this.sweeper = setInterval(() => this.sweep(), Math.min(5000, Math.max(50, this.workerTimeoutMs / 4)));
    this.sweeper.unref();
  }

  /**
   * Accepts a request: placed now if something fits, else backlogged. `label` names it in the log
   * (a stub's name). Throws QUOTA_EXCEEDED (nothing recorded) when the workspace already runs its
   * most containers.
   */
  submit(request: ContainerRequest, label?: string): ContainerRecord {
    checkQuota(this.options.quotas ?? DEFAULT_QUOTAS, "containers", this.containers.active(request.workspaceId));
    const record = this.containers.create(request);
    const shortfall = this.tryPlace(record);
    if (shortfall) {
      const key = request.stubId ?? record.id;
      const entry: BacklogEntry = {
        id: record.id, key, label: label ?? (request.stubId ? `stub ${request.stubId}` : `container ${record.id}`),
        since: Date.now(), attempts: 0, nextAt: Date.now() + this.backlogRetryMs, shortfall,
      };
      // Logged once when the stub starts waiting, not at every retry nor for each of its containers.
      if (!this.isWaiting(key)) {
        const { reason: _, ...figures } = shortfall;
        this.options.logger?.warn({ containerId: record.id, stubId: request.stubId, ...figures }, `${entry.label}: ${waitOf(shortfall, entry.since).message}`);
      }
      this.backlog.set(record.id, entry);
      this.events.emit("waiting", record.id); // metrics time the wait until "placed"
      this.reclaimFor(record, entry.label);
      this.armTimer();
    }
    return record;
  }

  /** Lets waiting containers stop idle keep-warm ones early (the autoscaler registers itself). */
  setReclaimer(reclaimer: Reclaimer): void {
    this.reclaimer = reclaimer;
  }

  /**
   * Stops the fewest idle keep-warm containers of `record`'s workspace that make room for it on one
   * worker, if any do: work that waits beats containers that only wait for work. Those already stopping count as
   * free, so each wait reclaims once.
   */
  private reclaimFor(record: ContainerRecord, label: string): void {
    if (!this.reclaimer) return;
    const active = (id: string) => {
      const r = this.containers.get(id);
      return r && r.state !== "EXITED" && r.workerId ? r : undefined;
    };
    for (const id of this.reclaiming) if (!active(id)) this.reclaiming.delete(id);
    const asIdle = (id: string, lastUsedAt: number): IdleContainer | undefined => {
      const r = active(id);
      return r && { id, workerId: r.workerId!, cpuMillicores: r.request.cpuMillicores, memoryMiB: r.request.memoryMiB, gpuType: r.gpuType, gpuCount: r.request.gpuCount, lastUsedAt };
    };
    const stopping = [...this.reclaiming].map((id) => asIdle(id, 0)).filter((i): i is IdleContainer => i !== undefined);
    const candidates = this.candidates().map((c) => ({ ...c, reserved: without(c.reserved, stopping.filter((s) => s.workerId === c.workerId)) }));
    // Room that is already being freed suffices: nothing more to stop.
    if (place(candidates, record.request).workerId !== null) return;
    // Only the same workspace's: one tenant's waiting work never cuts another tenant's warmth short.
    const idle = this.reclaimer.idle()
      .filter((i) => !this.reclaiming.has(i.id) && this.containers.get(i.id)?.request.workspaceId === record.request.workspaceId)
      .map((i) => asIdle(i.id, i.lastUsedAt))
      .filter((i): i is IdleContainer => i !== undefined);
    const plan = reclaimPlan(candidates, idle, record.request);
    if (!plan) return;
    this.options.logger?.info({ containerId: record.id, stopping: plan }, `${label}: stopping ${plan.length} idle warm container${plan.length > 1 ? "s" : ""} early to make room`);
    for (const id of plan) {
      this.reclaiming.add(id);
      this.reclaimer.stop(id);
    }
  }

  /**
   * Why the stub's containers wait to be placed, with current figures; undefined when none waits.
   * `since` is when the longest-waiting one began.
   */
  waiting(stubId: string): CapacityWait | undefined {
    let oldest: BacklogEntry | undefined;
    for (const e of this.backlog.values()) if (e.key === stubId && (!oldest || e.since < oldest.since)) oldest = e;
    if (!oldest) return undefined;
    const record = this.containers.get(oldest.id);
    // Figures as of now (other containers may have taken room since the last try); the last try's if it would fit now (it is about to be placed).
    const now = record ? capacityShortfall(this.candidates(), record.request) : oldest.shortfall;
    return waitOf(now.constraints.length > 0 ? now : oldest.shortfall, oldest.since);
  }

  private isWaiting(key: string): boolean {
    for (const e of this.backlog.values()) if (e.key === key) return true;
    return false;
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

  /** Whether a connected worker may run containers of this pool and workspace (capacity aside). */
  hasWorkerFor(demand: { pool: string | null; workspaceId: string }): boolean {
    // On every endpoint call of a shared store (forward.ts): the candidates without their reservations.
    return anyEligible([...this.workers.values()].map((w) => ({
      workerId: w.id, pool: w.pool, schedulable: w.connected && !w.cordoned, capacity: w.capacity, reserved: NO_RESERVATION,
      mayRunUntrusted: w.isolates || w.allowUnisolated === true, filtersEgress: w.filtersEgress === true,
      ...(w.workspaceId !== undefined && { workspaceId: w.workspaceId }),
    })), demand);
  }

  /** Whether this worker may run containers of this pool and workspace (capacity aside): what placement would allow. */
  mayRunOn(workerId: string, demand: { pool: string | null; workspaceId: string }): boolean {
    return this.candidates().some((c) => c.workerId === workerId && anyEligible([{ ...c, schedulable: true }], demand));
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

  /** Places the container if something fits; else why not (also kept as its message). */
  private tryPlace(record: ContainerRecord): CapacityShortfall | undefined {
    const result = place(this.candidates(), record.request);
    if (result.workerId === null) {
      const entry = this.backlog.get(record.id);
      if (entry) entry.shortfall = result.shortfall;
      record.message = `waiting for capacity: ${result.reason}`;
      return result.shortfall;
    }
    // The worker maps the chosen GPU type to device nodes; the workload can read it too.
    if (result.gpuType) record.request.env.BETA9_GPU_TYPE = result.gpuType;
    record.gpuType = result.gpuType;
    record.workerId = result.workerId;
    record.message = null;
    this.workers.get(result.workerId)!.send({ type: "container.run", request: record.request });
    this.events.emit("placed", { containerId: record.id, workerId: result.workerId });
    return undefined;
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
      if (!this.tryPlace(record)) {
        this.backlog.delete(entry.id);
        if (!this.isWaiting(entry.key)) this.options.logger?.info({ containerId: entry.id, waitedMs: now - entry.since }, `${entry.label}: capacity found, placed`);
      } else if (now - entry.since >= this.backlogTimeoutMs) {
        this.backlog.delete(entry.id);
        this.containers.apply({ containerId: entry.id, state: "EXITED", reason: "unschedulable", exitCode: null,
          message: `not placed within ${Math.round(this.backlogTimeoutMs / 1000)} s: ${entry.shortfall.reason}` });
      } else {
        this.reclaimFor(record, entry.label);
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
