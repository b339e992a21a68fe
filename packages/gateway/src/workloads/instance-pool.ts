/**
 * One stub's containers: which are ready, their invocation slots, the requests waiting for a slot,
 * readiness (the runner's /health, or a pod's port), and crash-loop detection. How many
 * containers the pool should have is not decided here: the autoscaler's loop asks the stub's
 * scaling policy (scaling/) with this pool's sample and calls startUpTo.
 *
 * A request that finds no free slot waits (bounded) while a container starts, so the first request
 * after scale-to-zero is served, not refused. A container idle for keepWarmSeconds is stopped; one
 * with an invocation in flight never is.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import { Beta9Error, RUNNER_SECRET_ENV, type ContainerRequest, type Stub } from "@beta9/protocol";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import { containerRequest, servedPort } from "./container-spec.js";
import { notReadyInTime, podNotReady, podOf, POD_PROBE_INTERVAL_MS, POD_TAIL_LINES, probePod } from "./pod.js";
import { connect, runnerReady, type RunnerTarget } from "./runner-client.js";
import type { ScalingSample } from "./scaling/index.js";

/** A free invocation slot on a ready container: the runner to call, and release() when done. */
export interface Slot extends RunnerTarget {
  containerId: string;
  stubId: string;
  release(): void;
}

interface Instance {
  id: string;
  /** Shown to the runner on every call (RUNNER_SECRET_ENV): other containers cannot drive it. */
  secret: string;
  origin: string | null;
  runner?: Dispatcher;
  ready: boolean;
  inflight: number;
  lastUsedAt: number;
  /** Stop it as soon as its last invocation ends (its deployment was stopped or restarted). */
  draining?: boolean;
  /** It answered /health (or its port opened) once. */
  served?: boolean;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** After this many containers in a row die before answering, waiting requests fail instead of restarting forever. */
const CRASH_LIMIT = 3;

/** What every pool shares: the autoscaler's options and its callbacks. */
export interface PoolHost {
  scheduler: Scheduler;
  logger?: Logger;
  acquireTimeoutMs: number;
  capacityGraceMs: number;
  secretEnv?: (workspaceId: string, names: readonly string[]) => Record<string, string>;
  recentLogs?: (workspaceId: string, containerId: string, lines: number) => Promise<string[]>;
  /** Demand changed: run the scaling loop for this pool now. */
  reconcile(pool: InstancePool): void;
  containerExited(containerId: string, reason: string): void;
  containerReady(stub: Stub, containerId: string): void;
}

export class InstancePool {
  private readonly containers = new Map<string, Instance>();
  private readonly waiters: Waiter[] = [];
  /** A serve session's stub: exactly one container, whatever the demand, never reaped idle. */
  pinned = false;
  /** Containers in a row that exited before they ever answered, and why the last one did. */
  private crashes = 0;
  private lastCrash?: string;
  /** The workspace's container quota refused the last scale-up: why, to tell waiters that time out. */
  quotaBlocked?: string;

  constructor(readonly stub: Stub, private readonly host: PoolHost) {}

  /** Slots per container: the runner's parallel invocations. */
  get perContainer(): number {
    return Math.max(this.stub.config.workers, this.stub.config.concurrentRequests);
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** What the scaling policy sees. Draining containers finish their own work and are not counted. */
  sample(): ScalingSample {
    let inflight = 0;
    for (const c of this.containers.values()) if (!c.draining) inflight += c.inflight;
    const { minContainers, maxContainers, tasksPerContainer } = this.stub.config.autoscaler;
    return { inflight, waiting: this.waiters.length, minContainers, maxContainers, tasksPerContainer };
  }

  /** Starts containers until `desired` (not draining) run; stops early when the quota refuses one. */
  startUpTo(desired: number): void {
    let current = 0;
    for (const c of this.containers.values()) if (!c.draining) current += 1;
    for (let n = current; n < desired; n++) if (!this.startContainer()) break;
  }

  list(): { id: string; ready: boolean; inflight: number }[] {
    return [...this.containers.values()].map((c) => ({ id: c.id, ready: c.ready, inflight: c.inflight }));
  }

  /** A free slot, or a bounded wait for one while the loop starts containers (`stub`: as the caller resolved it). */
  acquire(stub: Stub): Promise<Slot> {
    const pod = podOf(stub);
    const slot = this.freeSlot();
    if (slot) return Promise.resolve(slot);
    // Each waiter holds its request (and body, up to 32 MiB): bounded per stub, like a queue.
    const limit = stub.config.maxPendingTasks;
    if (this.waiters.length >= limit) {
      const count = this.waiters.length;
      return Promise.reject(new Beta9Error("QUEUE_FULL", { name: stub.name, count, limit }, { count, limit }));
    }
    return new Promise<Slot>((resolve, reject) => {
      // A pod's server may take its readyTimeout to start, after the image is fetched.
      const timeoutMs = this.host.acquireTimeoutMs + (pod ? pod.readyTimeout * 1000 : 0);
      const waiter: Waiter = { resolve, reject, timer: setTimeout(() => this.timedOut(waiter, timeoutMs), timeoutMs) };
      this.waiters.push(waiter);
      this.host.reconcile(this);
      this.failIfNeverFits(waiter);
    });
  }

  /** A free slot on a ready container right now, or undefined (waiters go first). */
  tryAcquire(): Slot | undefined {
    return this.waiters.length > 0 ? undefined : this.freeSlot();
  }

  private timedOut(waiter: Waiter, timeoutMs: number): void {
    this.waiters.splice(this.waiters.indexOf(waiter), 1);
    const { name, id } = this.stub;
    const within = `no container of ${name} could start within ${Math.round(timeoutMs / 1000)} s`;
    if (this.quotaBlocked && this.containers.size === 0) return waiter.reject(new Beta9Error("UNAVAILABLE", { reason: `${within}: ${this.quotaBlocked}` }));
    // Its containers still wait to be placed: the caller learns what for, with the figures.
    const wait = this.host.scheduler.waiting(id);
    if (wait) return waiter.reject(new Beta9Error("UNAVAILABLE", { reason: `${within}: ${wait.message}` }));
    waiter.reject(new Beta9Error("UNAVAILABLE", { reason: `no container of ${name} became ready within ${Math.round(timeoutMs / 1000)} s; see beta9 container list --all` }));
  }

  /** After the grace period, a waiter whose stub no connected worker could ever run gets the reason. */
  private failIfNeverFits(waiter: Waiter): void {
    const { config, workspaceId, name } = this.stub;
    const check = setTimeout(() => {
      const at = this.waiters.indexOf(waiter);
      if (at === -1) return;
      const reason = this.host.scheduler.neverFits({
        cpuMillicores: config.cpuMillicores, memoryMiB: config.memoryMiB, gpu: config.gpu, gpuCount: config.gpuCount, pool: config.pool, workspaceId,
      });
      if (reason === undefined) return;
      this.waiters.splice(at, 1);
      clearTimeout(waiter.timer);
      waiter.reject(new Beta9Error("CAPACITY_UNAVAILABLE", { reason: `${name}: ${reason}` }));
    }, this.host.capacityGraceMs);
    check.unref();
  }

  private freeSlot(): Slot | undefined {
    const limit = this.perContainer;
    // Least loaded ready container first (a loop: this runs on every invocation).
    let candidate: Instance | undefined;
    for (const c of this.containers.values()) {
      if (c.ready && c.inflight < limit && (candidate === undefined || c.inflight < candidate.inflight)) candidate = c;
    }
    if (!candidate) return undefined;
    const chosen = candidate;
    chosen.inflight += 1;
    let released = false;
    return {
      containerId: chosen.id,
      stubId: this.stub.id,
      origin: chosen.origin!,
      runner: chosen.runner!,
      authorization: `Bearer ${chosen.secret}`,
      release: () => {
        if (released) return;
        released = true;
        chosen.inflight -= 1;
        chosen.lastUsedAt = Date.now();
        if (chosen.draining && chosen.inflight === 0) this.host.scheduler.stop(chosen.id);
        this.serveWaiters();
      },
    };
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const slot = this.freeSlot();
      if (!slot) break;
      const waiter = this.waiters.shift()!;
      clearTimeout(waiter.timer);
      waiter.resolve(slot);
    }
  }

  private rejectWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Returns false when the workspace's container quota refused it (the loop retries on its tick). */
  private startContainer(): boolean {
    const { stub } = this;
    const secret = randomBytes(24).toString("hex");
    let record: ContainerRecord;
    try {
      record = this.host.scheduler.submit(containerRequest(stub, secret, this.perContainer, this.host.secretEnv), stub.name);
    } catch (err) {
      if (!(err instanceof Beta9Error) || err.code !== "QUOTA_EXCEEDED") throw err;
      if (!this.quotaBlocked) this.host.logger?.warn({ stub: stub.name, workspaceId: stub.workspaceId }, err.message);
      this.quotaBlocked = err.message;
      return false;
    }
    this.quotaBlocked = undefined;
    this.containers.set(record.id, { id: record.id, secret, origin: null, ready: false, inflight: 0, lastUsedAt: Date.now() });
    this.host.logger?.info({ stub: stub.name, containerId: record.id }, "scaling up");
    return true;
  }

  /**
   * Takes in a running container of this stub that another gateway (or this one before a restart)
   * started: its worker reported it in its hello. Its runner is called with the secret it was
   * started with (from its request), so attempts cut off by that gateway's death resume on it.
   * False when it cannot be driven from here (another workspace's, or a runner without a secret).
   */
  adopt(record: ContainerRecord): boolean {
    if (this.containers.has(record.id) || record.workspaceId !== this.stub.workspaceId || record.state !== "RUNNING") return false;
    const secret = record.request.env[RUNNER_SECRET_ENV];
    if (!podOf(this.stub) && !secret) return false;
    // A worker's hello is its word only (a machine may be hostile): the container must be exactly
    // what this gateway would start for the stub now (image, code, handler, limits, pool, env with
    // the secrets' current values: not one drained for a secret rotation), on a worker placement
    // could have chosen for it.
    const expected = containerRequest(this.stub, secret ?? "", this.perContainer, this.host.secretEnv);
    if (!sameRequest(record.request, { ...expected, containerId: record.id }) || record.workerId === null) return false;
    if (!this.host.scheduler.mayRunOn(record.workerId, { pool: this.stub.config.pool, workspaceId: this.stub.workspaceId })) return false;
    this.containers.set(record.id, { id: record.id, secret: secret ?? "", origin: null, ready: false, inflight: 0, lastUsedAt: Date.now(), served: true });
    this.host.logger?.info({ stub: this.stub.name, containerId: record.id }, "adopted a running container");
    this.onContainerState(record);
    return true;
  }

  has(containerId: string): boolean {
    return this.containers.has(containerId);
  }

  /** The scheduler's news about one of this pool's containers. */
  onContainerState(record: ContainerRecord): void {
    const entry = this.containers.get(record.id);
    if (!entry) return;
    if (record.state === "EXITED") return this.exited(record, entry);
    const address = record.ports[String(servedPort(this.stub))];
    if (record.state === "RUNNING" && address && entry.origin === null) {
      entry.origin = `http://${address.host}:${address.port}`;
      // A pod's server gets the caller's request as is (api/pods.ts), never a runner secret.
      entry.runner = connect(entry.origin, Math.max(4, this.perContainer * 2), podOf(this.stub) ? undefined : entry.secret);
      void this.waitHealthy(entry);
    }
  }

  private exited(record: ContainerRecord, entry: Instance): void {
    this.containers.delete(record.id);
    void entry.runner?.destroy().catch(() => undefined);
    entry.ready = false;
    this.host.containerExited(record.id, record.reason ?? "exited");
    if (!entry.served && !entry.draining) {
      this.crashes += 1;
      const code = record.exitCode !== null ? ` with code ${record.exitCode}` : "";
      this.lastCrash = `container ${record.id} ${record.reason ?? "exited"}${code}${record.message ? `: ${record.message}` : ""}`;
    }
    if (this.crashes >= CRASH_LIMIT && this.waiters.length > 0) {
      if (podOf(this.stub)) {
        void this.failPod(record.id, `${this.crashes} containers in a row exited before their port opened; the last: ${this.lastCrash}`);
        return;
      }
      // A handler that cannot load would otherwise restart in a loop until the wait times out.
      const reason = `${this.crashes} containers of ${this.stub.name} in a row exited before they answered; the last: ${this.lastCrash}; see beta9 container logs ${record.id}`;
      this.host.logger?.warn({ stub: this.stub.name, crashes: this.crashes }, "containers exit before they answer");
      this.rejectWaiters(new Beta9Error("UNAVAILABLE", { reason }));
      return;
    }
    // Requests still waiting need a replacement.
    if (this.waiters.length > 0) this.host.reconcile(this);
  }

  /** Ready once the runner answers /health 200 (its module loaded, onStart ran), or a pod's port opens. */
  private async waitHealthy(entry: Instance): Promise<void> {
    const pod = podOf(this.stub);
    const deadline = Date.now() + (pod ? pod.readyTimeout * 1000 : this.host.acquireTimeoutMs);
    while (this.containers.get(entry.id) === entry && Date.now() < deadline) {
      const ok = pod ? await probePod(entry.origin!, pod.healthPath) : await runnerReady(entry.origin!);
      if (ok) {
        entry.ready = true;
        entry.served = true;
        this.crashes = 0;
        entry.lastUsedAt = Date.now();
        this.host.containerReady(this.stub, entry.id);
        this.serveWaiters();
        return;
      }
      await new Promise((r) => setTimeout(r, pod ? POD_PROBE_INTERVAL_MS : 5));
    }
    if (pod && this.containers.get(entry.id) === entry && !entry.ready) {
      // A pod whose port never opens is stopped, and whoever waits for it learns why.
      entry.draining = true;
      this.host.scheduler.stop(entry.id);
      await this.failPod(entry.id, notReadyInTime(pod));
    }
  }

  /** Fails the pod's waiting requests with POD_NOT_READY, quoting the container's last log lines. */
  private async failPod(containerId: string, why: string): Promise<void> {
    this.host.logger?.warn({ stub: this.stub.name, containerId }, why);
    const lines = await this.host.recentLogs?.(this.stub.workspaceId, containerId, POD_TAIL_LINES).catch(() => []) ?? [];
    this.rejectWaiters(podNotReady(this.stub, containerId, why, lines));
  }

  /** Whether the pool may scale down at all (not pinned, keep-warm not forever). */
  private get reapable(): boolean {
    return this.stub.config.keepWarmSeconds >= 0 && !this.pinned;
  }

  /** Ready containers with nothing in flight, above minContainers, nobody waiting: least recently used first. */
  idleWarm(): { id: string; lastUsedAt: number }[] {
    if (!this.reapable || this.waiters.length > 0) return [];
    const idle = [...this.containers.values()].filter((c) => c.ready && c.inflight === 0 && !c.draining).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    const spare = this.containers.size - this.stub.config.autoscaler.minContainers;
    return idle.slice(0, Math.max(0, spare)).map((c) => ({ id: c.id, lastUsedAt: c.lastUsedAt }));
  }

  /** Stops an idle container before its keep-warm ends (other work waits for its room); false if not this pool's or busy. */
  stopEarly(id: string): boolean {
    const c = this.containers.get(id);
    if (!c || !c.ready || c.inflight > 0) return false;
    c.ready = false; // no new invocation lands on it while it stops
    this.host.logger?.info({ stub: this.stub.name, containerId: id }, "stopping early: other work waits for its room");
    // Not inside the scheduler's placement pass that asked for it.
    queueMicrotask(() => this.host.scheduler.stop(id));
    return true;
  }

  /** Stops containers idle past keep-warm, down to minContainers. */
  stopIdle(now: number): void {
    if (!this.reapable) return;
    const { keepWarmSeconds, autoscaler } = this.stub.config;
    let count = this.containers.size;
    for (const c of this.containers.values()) {
      if (count <= autoscaler.minContainers) break;
      if (!c.ready || c.inflight > 0 || this.waiters.length > 0) continue;
      if (now - c.lastUsedAt < keepWarmSeconds * 1000) continue;
      c.ready = false; // no new invocation lands on it while it stops
      count -= 1;
      this.host.logger?.info({ stub: this.stub.name, containerId: c.id }, "scaling down after keep-warm");
      this.host.scheduler.stop(c.id);
    }
  }

  /**
   * No container takes new work; idle ones stop now, busy ones when their invocations end.
   * Returns how many were not draining yet.
   */
  drainAll(): number {
    let drained = 0;
    for (const c of this.containers.values()) {
      if (c.draining) continue;
      c.ready = false;
      c.draining = true;
      drained += 1;
      if (c.inflight === 0) this.host.scheduler.stop(c.id);
    }
    return drained;
  }

  close(): void {
    for (const c of this.containers.values()) void c.runner?.destroy().catch(() => undefined);
    this.rejectWaiters(new Beta9Error("UNAVAILABLE", { reason: "the gateway is shutting down" }));
  }
}

/** Two container requests alike, but for what placement adds (the GPU type it chose). */
function sameRequest(a: ContainerRequest, b: ContainerRequest): boolean {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value === null || typeof value !== "object") return value;
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => [k, canonical(v)]));
  };
  const placed = (r: ContainerRequest) => ({ ...r, env: Object.fromEntries(Object.entries(r.env).filter(([k]) => k !== "BETA9_GPU_TYPE")) });
  return JSON.stringify(canonical(placed(a))) === JSON.stringify(canonical(placed(b)));
}
