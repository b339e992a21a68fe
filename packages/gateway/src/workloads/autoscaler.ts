/**
 * The autoscaler: one instance pool per stub (instance-pool.ts: containers, slots, waiters,
 * readiness, crash detection), and one loop that scales them. The loop takes a pool's sample,
 * asks the stub's scaling policy (scaling/: a pure function `(sample) => desired`) and starts
 * containers up to the answer. It runs when demand changes (a request waits, a container dies
 * under waiters, a restart) and on a tick, which also retries pools the quota held back and stops
 * containers idle past keep-warm.
 */
import type { Logger } from "pino";
import { Beta9Error, type Stub } from "@beta9/protocol";
import { TypedEmitter } from "../events.js";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import { InstancePool, type PoolHost, type Slot } from "./instance-pool.js";
import { podOf } from "./pod.js";
import { policyFor } from "./scaling/index.js";

export type { Slot } from "./instance-pool.js";

/** What the autoscaler tells the rest of the gateway (the dispatcher, metrics, the dashboard). */
export interface AutoscalerEvents {
  /** A pool's container exited. Scale-down never stops one with an invocation in flight, so an invocation open on it was lost. */
  containerExited: { containerId: string; reason: string };
  /** A pool's container first answered /health (a pod: its port opened): its cold start is over. */
  containerReady: { stub: Stub; containerId: string };
}

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
  /** How often the loop ticks: quota-blocked pools retry, idle containers meet keep-warm (default 1 s). */
  reapIntervalMs?: number;
  /** The values of a stub's named secrets, as environment variables (read at each container start). */
  secretEnv?: (workspaceId: string, names: readonly string[]) => Record<string, string>;
  /** A container's last log lines (a pod that never became ready says what it printed). */
  recentLogs?: (workspaceId: string, containerId: string, lines: number) => Promise<string[]>;
}

export class Autoscaler {
  private readonly pools = new Map<string, InstancePool>();
  /** Running containers no pool started, by id, until their stub's pool exists (onContainerState). */
  private readonly adoptable = new Map<string, ContainerRecord>();
  private readonly ticker: NodeJS.Timeout;
  readonly events = new TypedEmitter<AutoscalerEvents>();
  private readonly host: PoolHost;

  constructor(o: AutoscalerOptions) {
    this.host = {
      scheduler: o.scheduler, logger: o.logger, acquireTimeoutMs: o.acquireTimeoutMs ?? 120_000, capacityGraceMs: o.capacityGraceMs ?? 5_000,
      secretEnv: o.secretEnv, recentLogs: o.recentLogs,
      reconcile: (pool) => this.reconcile(pool),
      containerExited: (containerId, reason) => this.events.emit("containerExited", { containerId, reason }),
      containerReady: (stub, containerId) => this.events.emit("containerReady", { stub, containerId }),
    };
    this.ticker = setInterval(() => this.tick(), o.reapIntervalMs ?? 1000);
    this.ticker.unref();
    o.scheduler.containers.subscribe("*", (e) => {
      if (e.kind === "state" && e.container.stubId) this.onContainerState(e.container);
    });
    o.scheduler.setReclaimer({
      idle: () => [...this.pools.values()].flatMap((p) => p.idleWarm()),
      stop: (id) => void [...this.pools.values()].some((p) => p.stopEarly(id)),
    });
  }

  /**
   * A container's news goes to its stub's pool. One no pool started (a worker's hello listed it:
   * started by a gateway that died or restarted) is adopted by its stub's pool, now or when that
   * pool is first used, so work cut off with that gateway can resume on it.
   */
  private onContainerState(record: ContainerRecord): void {
    const stubId = record.stubId!;
    const pool = this.pools.get(stubId);
    if (pool?.has(record.id)) return pool.onContainerState(record);
    if (record.state !== "RUNNING") {
      this.adoptable.delete(record.id);
      return;
    }
    if (pool) pool.adopt(record);
    else this.adoptable.set(record.id, record);
  }

  /** The loop's one step for a pool: the stub's policy on its sample, containers started up to it. */
  private reconcile(pool: InstancePool): void {
    pool.startUpTo(policyFor(pool.stub, pool.pinned)(pool.sample()));
  }

  private tick(): void {
    const now = Date.now();
    // Pools the quota held back try again as the workspace's other containers end.
    for (const pool of this.pools.values()) if (pool.quotaBlocked) this.reconcile(pool);
    for (const pool of this.pools.values()) pool.stopIdle(now);
  }

  /**
   * Calls `listener` when one of the pools' containers exits. Scale-down never stops a container
   * with an invocation in flight, so an exit under an open invocation means the container (or its
   * worker) was lost: the dispatcher retries what ran there.
   */
  onContainerExit(listener: (containerId: string, reason: string) => void): () => void {
    return this.events.on("containerExited", (e) => listener(e.containerId, e.reason));
  }

  /** Calls `listener` when a pool's container first answers /health: its cold start is over (metrics). */
  onContainerReady(listener: (stub: Stub, containerId: string) => void): () => void {
    return this.events.on("containerReady", (e) => listener(e.stub, e.containerId));
  }

  /** Requests waiting for a slot, per stub id (metrics). */
  waiting(): Map<string, number> {
    return new Map([...this.pools].filter(([, p]) => p.waiting > 0).map(([id, p]) => [id, p.waiting]));
  }

  /** Containers of a stub, for status and tests. */
  containersOf(stubId: string): { id: string; ready: boolean; inflight: number }[] {
    return this.pools.get(stubId)?.list() ?? [];
  }

  /** A free invocation slot on a ready container of the stub, starting containers as demand needs. */
  acquire(stub: Stub): Promise<Slot> {
    if (!runnable(stub)) {
      return Promise.reject(new Beta9Error("CONFLICT", { reason: `${stub.name} has no code bundle or handler to run; deploy it with beta9 deploy FILE:EXPORT` }));
    }
    return this.poolOf(stub).acquire(stub);
  }

  /** A free slot on a ready container right now, or undefined (no waiting, no scaling; waiters go first). */
  tryAcquire(stub: Stub): Slot | undefined {
    return runnable(stub) ? this.pools.get(stub.id)?.tryAcquire() : undefined;
  }

  /** Runs exactly one container of the stub from now on (`beta9 serve`), starting it at once. */
  pin(stub: Stub): void {
    const pool = this.poolOf(stub);
    pool.pinned = true;
    this.reconcile(pool);
  }

  /**
   * Stops the stub's containers (its deployment was stopped or deleted): idle ones now, busy ones
   * when their invocations end; none takes new work.
   */
  drain(stubId: string): void {
    const pool = this.pools.get(stubId);
    if (!pool) return;
    pool.pinned = false;
    pool.drainAll();
  }

  /**
   * Replaces the stub's containers (new secret values, a fresh start): the running ones take no
   * new work and stop once idle; new ones start as demand (or minContainers) asks, with the stub's
   * current environment.
   */
  restart(stubId: string): number {
    const pool = this.pools.get(stubId);
    if (!pool) return 0;
    const replaced = pool.drainAll();
    this.reconcile(pool);
    return replaced;
  }

  close(): void {
    clearInterval(this.ticker);
    for (const pool of this.pools.values()) pool.close();
  }

  private poolOf(stub: Stub): InstancePool {
    let pool = this.pools.get(stub.id);
    if (!pool) {
      this.pools.set(stub.id, (pool = new InstancePool(stub, this.host)));
      for (const [id, record] of this.adoptable) {
        if (record.stubId !== stub.id) continue;
        this.adoptable.delete(id);
        pool.adopt(record);
      }
    }
    return pool;
  }
}

/** A pod runs its image; anything else needs its code bundle and handler. */
const runnable = (stub: Stub): boolean => podOf(stub) !== undefined || (!!stub.objectId && !!stub.config.handler);
