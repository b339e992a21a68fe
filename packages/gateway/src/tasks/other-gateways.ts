/**
 * The task dispatcher's side of a shared store (Postgres, several gateways): what the other
 * gateways do to the same queues reaches this one. Their puts and claims change a queue's count
 * (resync re-reads it), their ends answer callers waiting here (a function call, a follower), and
 * the attempts of a gateway that stopped or went silent are taken over. Notifications can be
 * missed (a lost listening connection), so sweep() looks again every few seconds. On a store one
 * gateway owns (SQLite) only the orphan check runs, and finds nothing.
 */
import type { Logger } from "pino";
import { TERMINAL_TASK_STATUSES, type Stub, type Task, type TaskStatus } from "@beta9/protocol";
import type { TypedEmitter } from "../events.js";
import type { Store } from "../store/types.js";
import { PerKeyCoalescer } from "./coalesce.js";

const RESYNC_GAP_MS = 250;
/** Running tasks read again per look (each one read; the oldest first). */
const MAX_RUNNING_CHECKS = 500;

export interface DispatcherHooks {
  store: Store;
  logger?: Logger;
  events: TypedEmitter<Record<string, Task>>;
  isRunning(taskId: string): boolean;
  /** The tasks this gateway runs attempts of now. */
  runningIds(): string[];
  /** Stops this gateway's attempt of a task another gateway cancelled. */
  stopRunning(taskId: string): Promise<void>;
  /** The stubs this gateway counts tasks of now. */
  counted(): string[];
  /** Whether a worker connected here could run the stub's containers. */
  serves(stub: Stub): boolean;
  closed(): boolean;
  /** The stub's count becomes `waiting` (in the store) plus this gateway's running tasks. */
  recount(stubId: string, waiting: number): void;
  count(stubId: string, delta: number): void;
  outcome(stubId: string, status: TaskStatus): void;
  emit(taskId: string, stub?: Stub): Promise<void>;
  pump(stub: Stub): Promise<void>;
  /** Pumps the stubs of re-queued attempts again once containers other than theirs may take them. */
  pumpWhenResumesLapse(requeued: readonly { stubId: string; status: string }[]): void;
  background(work: Promise<unknown>, what: string): void;
}

export class OtherGateways {
  /** At most one re-read per stub every RESYNC_GAP_MS: under steady puts elsewhere, each costs a COUNT. */
  private readonly resyncs = new PerKeyCoalescer((stubId) => this.resyncNow(stubId), RESYNC_GAP_MS);
  private readonly unsubscribe: () => void;

  constructor(private readonly h: DispatcherHooks) {
    const queued = h.store.tasks.onQueuedElsewhere((stubId) => h.background(this.resync(stubId), "resync"));
    const ended = h.store.tasks.onEndedElsewhere((taskId) => h.background(this.tellEnded(taskId), "ended elsewhere"));
    this.unsubscribe = () => {
      queued();
      ended();
    };
  }

  close(): void {
    this.unsubscribe();
  }

  /** Re-reads the stub's waiting tasks and starts attempts for them (coalesced per stub). */
  resync(stubId: string): Promise<void> {
    return this.resyncs.run(stubId);
  }

  /** The periodic look: orphans always; on a shared store, the queues and awaited tasks again. */
  async sweep(): Promise<void> {
    await this.adoptOrphans();
    if (!this.h.store.tasks.shared) return;
    // The stubs counted here too: a queue another gateway drained has nothing waiting, and this
    // gateway's count of its own puts (which it never ends) must come down to that.
    const stubs = new Set([...(await this.h.store.tasks.stubsWithPending()), ...this.h.counted()]);
    for (const stubId of stubs) this.h.background(this.resync(stubId), "resync");
    for (const taskId of this.h.events.keys()) if (!this.h.isRunning(taskId)) this.h.background(this.tellEnded(taskId), "ended elsewhere");
    // A cancel whose notice was missed (or came before this gateway's attempt was recorded) still stops the handler.
    for (const taskId of this.h.runningIds().slice(0, MAX_RUNNING_CHECKS)) this.h.background(this.tellEnded(taskId), "cancelled elsewhere");
  }

  /**
   * A task another gateway ended reaches whoever waits for it here; and one it cancelled while
   * this gateway runs it stops here (its handler sees ctx.signal abort).
   */
  private async tellEnded(taskId: string): Promise<void> {
    const running = this.h.isRunning(taskId);
    if (!running && this.h.events.listenerCount(taskId) === 0) return;
    const task = await this.h.store.tasks.getAny(taskId);
    if (!task || !TERMINAL_TASK_STATUSES.includes(task.status)) return;
    if (running && task.status === "CANCELLED") await this.h.stopRunning(taskId);
    if (!running) this.h.events.emit(taskId, task);
  }

  private async resyncNow(stubId: string): Promise<void> {
    if (this.h.closed()) return;
    const waiting = await this.h.store.tasks.waiting(stubId);
    this.h.recount(stubId, waiting);
    if (waiting === 0) return;
    const stub = await this.h.store.stubs.getAny(stubId);
    // No worker here for it: the gateways that have one run it; waiting here for containers that
    // cannot be placed would hold requests in this scheduler for nothing.
    if (stub && this.h.serves(stub)) await this.h.pump(stub);
  }

  /** Attempts another gateway was running when it stopped or went silent: retried here (or ended, past their maxRetries). */
  private async adoptOrphans(): Promise<void> {
    const orphans = await this.h.store.tasks.requeueOrphaned();
    if (orphans.length === 0) return;
    this.h.logger?.warn({ retried: orphans.filter((t) => t.status === "RETRY").length, ended: orphans.filter((t) => t.status === "ERROR").length },
      "tasks another gateway was running when it stopped are retried here (or ended, past their maxRetries)");
    for (const t of orphans) {
      const stub = await this.h.store.stubs.getAny(t.stubId);
      if (!stub) continue;
      if (t.status === "ERROR") {
        this.h.outcome(t.stubId, "ERROR");
        this.h.background(this.h.emit(t.id, stub), "callback");
      }
    }
    // Counted in here by what was taken over only (the store's count would add other gateways' live tasks).
    for (const t of orphans) if (t.status === "RETRY") this.h.count(t.stubId, 1);
    for (const stubId of new Set(orphans.map((t) => t.stubId))) {
      const stub = await this.h.store.stubs.getAny(stubId);
      if (stub) this.h.background(this.h.pump(stub), "pump");
    }
    this.h.pumpWhenResumesLapse(orphans);
  }
}
