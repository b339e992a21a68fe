/**
 * Containers for deployed workloads: one pool per stub, scaled by queue depth.
 *
 *   desired = clamp(ceil(demand / tasksPerContainer), minContainers, maxContainers)
 *
 * where demand is invocations running plus invocations waiting for a slot. A request that finds
 * no free slot waits (bounded) while a container starts, so the first request after scale-to-zero
 * is served, not refused. A container idle for keepWarmSeconds is stopped; one with an
 * invocation in flight never is.
 */
import type { Logger } from "pino";
import { Pool, request, type Dispatcher } from "undici";
import { Beta9Error, RUNNER_PORT, RUNNER_SECRET_ENV, type Stub } from "@beta9/protocol";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import { randomBytes, randomUUID } from "node:crypto";

export interface Slot {
  containerId: string;
  stubId: string;
  /** http://host:port of the runner. */
  origin: string;
  /** Kept-alive connections to that runner (each request carries the container's secret), shared by every invocation. */
  runner: Dispatcher;
  release(): void;
}

interface PoolContainer {
  id: string;
  /** Shown to the runner on every call (RUNNER_SECRET_ENV): other containers cannot drive it. */
  secret: string;
  origin: string | null;
  runner?: Dispatcher;
  ready: boolean;
  inflight: number;
  lastUsedAt: number;
  /** Stop it as soon as its last invocation ends (its deployment was stopped). */
  draining?: boolean;
  /** It answered /health once. */
  served?: boolean;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface StubPool {
  stub: Stub;
  containers: Map<string, PoolContainer>;
  waiters: Waiter[];
  /** A serve session's stub: exactly one container, whatever the demand, never reaped idle. */
  pinned?: boolean;
  /** Containers in a row that exited before they ever answered, and why the last one did. */
  crashes: number;
  lastCrash?: string;
  /** The workspace's container quota refused the last scale-up: why, to tell waiters that time out. */
  quotaBlocked?: string;
}

/** After this many containers in a row die before answering, waiting requests fail instead of restarting forever. */
const CRASH_LIMIT = 3;

export interface AutoscalerOptions {
  scheduler: Scheduler;
  logger?: Logger;
  /** How long a request waits for a container before a 503 (default 120 s: covers image fetch). */
  acquireTimeoutMs?: number;
  /**
   * How long a request waits before it fails with CAPACITY_UNAVAILABLE when no connected worker
   * could ever run the stub's containers (a GPU type nobody has; default 5 s, for workers joining).
   */
  capacityGraceMs?: number;
  /** How often idle containers are checked against keep-warm (default 1 s). */
  reapIntervalMs?: number;
  /** The values of a stub's named secrets, as environment variables (read at each container start). */
  secretEnv?: (workspaceId: string, names: readonly string[]) => Record<string, string>;
}

export class Autoscaler {
  private readonly pools = new Map<string, StubPool>();
  private readonly reaper: NodeJS.Timeout;
  private readonly exitListeners = new Set<(containerId: string, reason: string) => void>();
  private readonly readyListeners = new Set<(stub: Stub, containerId: string) => void>();

  constructor(private readonly o: AutoscalerOptions) {
    this.reaper = setInterval(() => this.scaleDownIdle(), o.reapIntervalMs ?? 1000);
    this.reaper.unref();
    o.scheduler.containers.subscribe("*", (e) => {
      if (e.kind === "state") this.onContainerState(e.container);
    });
    o.scheduler.setReclaimer({ idle: () => this.idleWarm(), stop: (id) => this.stopEarly(id) });
  }

  /**
   * Containers that only wait for work: ready, nothing in flight, nobody waiting for their stub,
   * above minContainers, of a stub that may scale down (not pinned, keep-warm not forever).
   */
  private idleWarm(): { id: string; lastUsedAt: number }[] {
    const out: { id: string; lastUsedAt: number }[] = [];
    for (const pool of this.pools.values()) {
      const { keepWarmSeconds, autoscaler } = pool.stub.config;
      if (keepWarmSeconds < 0 || pool.pinned || pool.waiters.length > 0) continue;
      const idle = [...pool.containers.values()].filter((c) => c.ready && c.inflight === 0 && !c.draining).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
      const spare = pool.containers.size - autoscaler.minContainers;
      for (const c of idle.slice(0, Math.max(0, spare))) out.push({ id: c.id, lastUsedAt: c.lastUsedAt });
    }
    return out;
  }

  /** Stops an idle container before its keep-warm ends, because other work waits for its room. */
  private stopEarly(id: string): void {
    for (const pool of this.pools.values()) {
      const c = pool.containers.get(id);
      if (!c || !c.ready || c.inflight > 0) continue;
      c.ready = false; // no new invocation lands on it while it stops
      this.o.logger?.info({ stub: pool.stub.name, containerId: id }, "stopping early: other work waits for its room");
      // Not inside the scheduler's placement pass that asked for it.
      queueMicrotask(() => this.o.scheduler.stop(id));
      return;
    }
  }

  /**
   * Calls `listener` when one of the pools' containers exits. Scale-down never stops a container
   * with an invocation in flight, so an exit under an open invocation means the container (or its
   * worker) was lost: the dispatcher retries what ran there.
   */
  onContainerExit(listener: (containerId: string, reason: string) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  /** Calls `listener` when a pool's container first answers /health: its cold start is over (metrics). */
  onContainerReady(listener: (stub: Stub, containerId: string) => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Requests waiting for a slot, per stub id (metrics). */
  waiting(): Map<string, number> {
    return new Map([...this.pools].filter(([, p]) => p.waiters.length > 0).map(([id, p]) => [id, p.waiters.length]));
  }

  /** Containers of a stub, for status and tests. */
  containersOf(stubId: string): { id: string; ready: boolean; inflight: number }[] {
    return [...(this.pools.get(stubId)?.containers.values() ?? [])].map((c) => ({ id: c.id, ready: c.ready, inflight: c.inflight }));
  }

  /** A free invocation slot on a ready container of the stub, starting containers as demand needs. */
  acquire(stub: Stub): Promise<Slot> {
    if (!stub.objectId || !stub.config.handler) {
      return Promise.reject(new Beta9Error("CONFLICT", { reason: `${stub.name} has no code bundle or handler to run; deploy it with beta9 deploy FILE:EXPORT` }));
    }
    const pool = this.poolOf(stub);
    const slot = this.freeSlot(pool);
    if (slot) return Promise.resolve(slot);
    // Each waiter holds its request (and body, up to 32 MiB): bounded per stub, like a queue.
    const limit = stub.config.maxPendingTasks;
    if (pool.waiters.length >= limit) {
      const count = pool.waiters.length;
      return Promise.reject(new Beta9Error("QUEUE_FULL", { name: stub.name, count, limit }, { count, limit }));
    }
    return new Promise<Slot>((resolve, reject) => {
      const timeoutMs = this.o.acquireTimeoutMs ?? 120_000;
      const waiter: Waiter = {
        resolve, reject,
        timer: setTimeout(() => {
          pool.waiters.splice(pool.waiters.indexOf(waiter), 1);
          if (pool.quotaBlocked && pool.containers.size === 0) return reject(new Beta9Error("UNAVAILABLE", { reason: `no container of ${stub.name} could start within ${Math.round(timeoutMs / 1000)} s: ${pool.quotaBlocked}` }));
          // Its containers still wait to be placed: the caller learns what for, with the figures.
          const wait = this.o.scheduler.waiting(stub.id);
          if (wait) return reject(new Beta9Error("UNAVAILABLE", { reason: `no container of ${stub.name} could start within ${Math.round(timeoutMs / 1000)} s: ${wait.message}` }));
          reject(new Beta9Error("UNAVAILABLE", { reason: `no container of ${stub.name} became ready within ${Math.round(timeoutMs / 1000)} s; see beta9 container list --all` }));
        }, timeoutMs),
      };
      pool.waiters.push(waiter);
      this.scale(pool);
      this.failIfNeverFits(pool, waiter);
    });
  }

  /** After the grace period, a waiter whose stub no connected worker could ever run gets the reason. */
  private failIfNeverFits(pool: StubPool, waiter: Waiter): void {
    const { config } = pool.stub;
    const check = setTimeout(() => {
      const at = pool.waiters.indexOf(waiter);
      if (at === -1) return;
      const reason = this.o.scheduler.neverFits({
        cpuMillicores: config.cpuMillicores, memoryMiB: config.memoryMiB, gpu: config.gpu, gpuCount: config.gpuCount,
        pool: config.pool, workspaceId: pool.stub.workspaceId,
      });
      if (reason === undefined) return;
      pool.waiters.splice(at, 1);
      clearTimeout(waiter.timer);
      waiter.reject(new Beta9Error("CAPACITY_UNAVAILABLE", { reason: `${pool.stub.name}: ${reason}` }));
    }, this.o.capacityGraceMs ?? 5_000);
    check.unref();
  }

  /** A free slot on a ready container right now, or undefined (no waiting, no scaling; waiters go first). */
  tryAcquire(stub: Stub): Slot | undefined {
    const pool = this.pools.get(stub.id);
    if (!pool || pool.waiters.length > 0 || !stub.objectId || !stub.config.handler) return undefined;
    return this.freeSlot(pool);
  }

  /** Runs exactly one container of the stub from now on (`beta9 serve`), starting it at once. */
  pin(stub: Stub): void {
    const pool = this.poolOf(stub);
    pool.pinned = true;
    this.scale(pool);
  }

  /**
   * Stops the stub's containers (its deployment was stopped or deleted): idle ones now, busy ones
   * when their invocations end; none takes new work.
   */
  drain(stubId: string): void {
    const pool = this.pools.get(stubId);
    if (!pool) return;
    pool.pinned = false;
    for (const c of pool.containers.values()) {
      c.ready = false;
      c.draining = true;
      if (c.inflight === 0) this.o.scheduler.stop(c.id);
    }
  }

  /**
   * Replaces the stub's containers (new secret values, a fresh start): the running ones take no
   * new work and stop once idle; new ones start as demand (or minContainers) asks, with the stub's
   * current environment.
   */
  restart(stubId: string): number {
    const pool = this.pools.get(stubId);
    if (!pool) return 0;
    let replaced = 0;
    for (const c of pool.containers.values()) {
      if (c.draining) continue;
      c.ready = false;
      c.draining = true;
      replaced += 1;
      if (c.inflight === 0) this.o.scheduler.stop(c.id);
    }
    this.scale(pool);
    return replaced;
  }

  close(): void {
    clearInterval(this.reaper);
    for (const pool of this.pools.values()) {
      for (const c of pool.containers.values()) void c.runner?.destroy().catch(() => undefined);
      for (const w of pool.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Beta9Error("UNAVAILABLE", { reason: "the gateway is shutting down" }));
      }
    }
  }

  private poolOf(stub: Stub): StubPool {
    let pool = this.pools.get(stub.id);
    if (!pool) this.pools.set(stub.id, (pool = { stub, containers: new Map(), waiters: [], crashes: 0 }));
    return pool;
  }

  private perContainer(pool: StubPool): number {
    return Math.max(pool.stub.config.workers, pool.stub.config.concurrentRequests);
  }

  private freeSlot(pool: StubPool): Slot | undefined {
    const limit = this.perContainer(pool);
    // Least loaded ready container first (a loop: this runs on every invocation).
    let candidate: PoolContainer | undefined;
    for (const c of pool.containers.values()) {
      if (c.ready && c.inflight < limit && (candidate === undefined || c.inflight < candidate.inflight)) candidate = c;
    }
    if (!candidate) return undefined;
    candidate.inflight += 1;
    let released = false;
    return {
      containerId: candidate.id,
      stubId: pool.stub.id,
      origin: candidate.origin!,
      runner: candidate.runner!,
      release: () => {
        if (released) return;
        released = true;
        candidate.inflight -= 1;
        candidate.lastUsedAt = Date.now();
        if (candidate.draining && candidate.inflight === 0) this.o.scheduler.stop(candidate.id);
        this.serveWaiters(pool);
      },
    };
  }

  private serveWaiters(pool: StubPool): void {
    while (pool.waiters.length > 0) {
      const slot = this.freeSlot(pool);
      if (!slot) break;
      const waiter = pool.waiters.shift()!;
      clearTimeout(waiter.timer);
      waiter.resolve(slot);
    }
  }

  /** Starts containers up to what queue depth asks for. */
  private scale(pool: StubPool): void {
    const { autoscaler } = pool.stub.config;
    // Draining containers (stopping after a restart or stop) finish their own work and are not counted.
    const inflight = [...pool.containers.values()].reduce((n, c) => n + (c.draining ? 0 : c.inflight), 0);
    const demand = inflight + pool.waiters.length;
    const desired = pool.pinned ? 1 : Math.min(autoscaler.maxContainers, Math.max(autoscaler.minContainers, Math.ceil(demand / autoscaler.tasksPerContainer)));
    let current = 0;
    for (const c of pool.containers.values()) if (!c.draining) current += 1;
    for (let n = current; n < desired; n++) if (!this.startContainer(pool)) break;
  }

  /** Returns false when the workspace's container quota refused it (the pool retries on the reaper's tick). */
  private startContainer(pool: StubPool): boolean {
    const { stub } = pool;
    const secret = randomBytes(24).toString("hex");
    let record: ContainerRecord;
    try {
      record = this.submit(pool, secret);
    } catch (err) {
      if (!(err instanceof Beta9Error) || err.code !== "QUOTA_EXCEEDED") throw err;
      if (!pool.quotaBlocked) this.o.logger?.warn({ stub: stub.name, workspaceId: stub.workspaceId }, err.message);
      pool.quotaBlocked = err.message;
      return false;
    }
    pool.quotaBlocked = undefined;
    pool.containers.set(record.id, { id: record.id, secret, origin: null, ready: false, inflight: 0, lastUsedAt: Date.now() });
    this.o.logger?.info({ stub: stub.name, containerId: record.id }, "scaling up");
    return true;
  }

  private submit(pool: StubPool, secret: string): ContainerRecord {
    const { stub } = pool;
    return this.o.scheduler.submit({
      containerId: randomUUID(), workspaceId: stub.workspaceId, stubId: stub.id, imageId: stub.config.imageId,
      command: ["runner"], cpuMillicores: stub.config.cpuMillicores,
      env: {
        ...stub.config.env, ...(stub.config.secrets.length > 0 && this.o.secretEnv?.(stub.workspaceId, stub.config.secrets)),
        BETA9_STUB_ID: stub.id, [RUNNER_SECRET_ENV]: secret,
      },
      memoryMiB: stub.config.memoryMiB, gpu: stub.config.gpu, gpuCount: stub.config.gpuCount, ports: [RUNNER_PORT], pool: stub.config.pool,
      runner: { codeObjectId: stub.objectId!, handler: stub.config.handler!, concurrency: this.perContainer(pool) },
      ...(stub.config.volumes?.length && { volumes: stub.config.volumes }),
      ...(stub.config.egress && { egress: stub.config.egress }),
    }, stub.name);
  }

  private onContainerState(record: ContainerRecord): void {
    if (!record.stubId) return;
    const pool = this.pools.get(record.stubId);
    const entry = pool?.containers.get(record.id);
    if (!pool || !entry) return;
    if (record.state === "EXITED") {
      pool.containers.delete(record.id);
      void entry.runner?.destroy().catch(() => undefined);
      entry.ready = false;
      for (const listener of this.exitListeners) listener(record.id, record.reason ?? "exited");
      if (!entry.served && !entry.draining) {
        pool.crashes += 1;
        const code = record.exitCode !== null ? ` with code ${record.exitCode}` : "";
        pool.lastCrash = `container ${record.id} ${record.reason ?? "exited"}${code}${record.message ? `: ${record.message}` : ""}`;
      }
      if (pool.crashes >= CRASH_LIMIT && pool.waiters.length > 0) {
        // A handler that cannot load would otherwise restart in a loop until the wait times out.
        const reason = `${pool.crashes} containers of ${pool.stub.name} in a row exited before they answered; the last: ${pool.lastCrash}; see beta9 container logs ${record.id}`;
        this.o.logger?.warn({ stub: pool.stub.name, crashes: pool.crashes }, "containers exit before they answer");
        for (const w of pool.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Beta9Error("UNAVAILABLE", { reason }));
        }
        return;
      }
      // Requests still waiting need a replacement.
      if (pool.waiters.length > 0) this.scale(pool);
      return;
    }
    const address = record.ports[String(RUNNER_PORT)];
    if (record.state === "RUNNING" && address && entry.origin === null) {
      entry.origin = `http://${address.host}:${address.port}`;
      const authorization = `Bearer ${entry.secret}`;
      entry.runner = new Pool(entry.origin, { connections: Math.max(4, this.perContainer(pool) * 2), keepAliveTimeout: 60_000 })
        .compose((dispatch) => (opts, handler) => dispatch({ ...opts, headers: { ...(opts.headers as Record<string, string>), authorization } }, handler));
      void this.waitHealthy(pool, entry);
    }
  }

  /** The runner answers /health 200 once the user's module is loaded and onStart ran. */
  private async waitHealthy(pool: StubPool, entry: PoolContainer): Promise<void> {
    const deadline = Date.now() + (this.o.acquireTimeoutMs ?? 120_000);
    while (pool.containers.get(entry.id) === entry && Date.now() < deadline) {
      const ok = await request(`${entry.origin}/health`, { headersTimeout: 2000, bodyTimeout: 2000 })
        .then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
      if (ok) {
        entry.ready = true;
        entry.served = true;
        pool.crashes = 0;
        entry.lastUsedAt = Date.now();
        for (const listener of this.readyListeners) listener(pool.stub, entry.id);
        this.serveWaiters(pool);
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private scaleDownIdle(): void {
    const now = Date.now();
    // Pools the quota held back try again as the workspace's other containers end.
    for (const pool of this.pools.values()) if (pool.quotaBlocked) this.scale(pool);
    for (const pool of this.pools.values()) {
      const { keepWarmSeconds, autoscaler } = pool.stub.config;
      if (keepWarmSeconds < 0 || pool.pinned) continue;
      let count = pool.containers.size;
      for (const c of pool.containers.values()) {
        if (count <= autoscaler.minContainers) break;
        if (!c.ready || c.inflight > 0 || pool.waiters.length > 0) continue;
        if (now - c.lastUsedAt < keepWarmSeconds * 1000) continue;
        c.ready = false; // no new invocation lands on it while it stops
        count -= 1;
        this.o.logger?.info({ stub: pool.stub.name, containerId: c.id }, "scaling down after keep-warm");
        this.o.scheduler.stop(c.id);
      }
    }
  }
}
