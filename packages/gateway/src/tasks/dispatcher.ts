/**
 * The task dispatcher: durable tasks for task queues. A task accepted with 200 is a row in the
 * store before the answer goes out, so neither a gateway restart nor a worker's death loses it:
 * attempts that were running when the gateway stopped are RETRY at start (counted: at least once), and an attempt
 * whose container dies (the open /invoke or /invoke-batch request fails) is retried.
 *
 * Each attempt: take a slot from the autoscaler (starting containers as the queue deepens), claim
 * the oldest due task (or, for a put that finds a free slot and nothing queued, write it RUNNING
 * at once), run it through the runner client (workloads/runner-client.ts), and record its
 * outcome: COMPLETE; a handler error or a lost container is RETRY (retries counted, last error, next attempt time) for up to
 * maxRetries attempts with exponential backoff, then ERROR; TIMEOUT after the policy's
 * timeout; CANCELLED when asked (the runner's signal is aborted); EXPIRED when it waited past its
 * TTL.
 */
import { TypedEmitter } from "../events.js";
import type { Logger } from "pino";
import { TERMINAL_TASK_STATUSES, type Stub, type Task, type TaskStatus } from "@beta9/protocol";
import { RESUME_ELSEWHERE_AFTER_MS, type ClaimedTask, type Store } from "../store/types.js";
import type { Autoscaler, Slot } from "../workloads/autoscaler.js";
import { sendCallback } from "./callback.js";
import { OtherGateways } from "./other-gateways.js";
import { untilStored } from "./until-stored.js";
import { actionFor, type RetryHow } from "./attempt-outcome.js";
import { cancelInvocation, CallTimedOut, ContainerLost, runTask } from "../workloads/runner-client.js";

export interface DispatcherOptions {
  store: Store;
  autoscaler: Autoscaler;
  logger?: Logger;
  /** What a stub's containers wait for now ("waiting for capacity: …"), named in the error of a task that expires meanwhile. */
  waitingFor?: (stubId: string) => string | undefined;
  /** First retry delay; doubles per retry up to 30 s (default 500 ms). */
  retryBaseMs?: number;
  /**
   * Whether a worker connected here could run the stub's containers (its pool, its workspace's
   * machines). On a shared store, a gateway with none leaves other gateways' queued tasks to them
   * instead of waiting for containers it cannot place. Default: always.
   */
  serves?: (stub: Stub) => boolean;
  sweepIntervalMs?: number;
}

/** Sweeps between two looks for another gateway's orphaned attempts (5 s at the default 1 s sweep). */
const ORPHAN_SWEEP_EVERY = 5;
/** A task a runner had no slot for goes back to the queue for this long (no retry counted). */
const BUSY_RETRY_MS = 250;
const RELEASE_AGAIN_MS = 2000;

interface Running {
  /** Aborted with why (runner-client.ts): CallTimedOut, ContainerLost, or none (cancelled, closing). */
  abort: AbortController;
  slot: Slot;
  cancelled: boolean;
}

export class TaskDispatcher {
  /**
   * The stack of each task's last failed attempt, until its end is told to whoever waits for it
   * (a function call answers with it): kept in memory only, like the wait itself.
   */
  private readonly stacks = new Map<string, string>();

  /** The last failed attempt's stack (for a listener of the task's terminal event). */
  stackOf(taskId: string): string | undefined {
    return this.stacks.get(taskId);
  }

  /** A task's changes under its id (SSE subscribers, function calls, log follows). */
  readonly events = new TypedEmitter<Record<string, Task>>();
  private readonly running = new Map<string, Running>();
  /** Attempts in progress (waiting for a slot or running), per stub. */
  private readonly attempts = new Map<string, number>();
  /** Of those, the ones that hold a task (claimed or started at its put), per stub. */
  private readonly active = new Map<string, number>();
  /**
   * Queue depth per stub (PENDING + RUNNING + RETRY), kept in memory: counting rows on every put
   * and every attempt made queues O(n²). Exact because one gateway process writes a data dir (its
   * lock); recover() loads it at start. On a shared store (Postgres) other gateways put and claim
   * too: the count is then this gateway's running tasks plus the store's waiting ones, read again
   * (resync) when another gateway queues, when a claim comes back empty, and every 5 s.
   */
  private readonly depth = new Map<string, number>();
  /** Why the stub's last attempt got no container: logged when it changes, not at every retry. */
  private readonly noContainer = new Map<string, string>();
  /** Each attempt's outcome: a task that ended, or RETRY (metrics, the dashboard). */
  private readonly outcomes = new TypedEmitter<{ outcome: { stubId: string; status: TaskStatus; startedAt: string | null } }>();
  private readonly sweeper: NodeJS.Timeout;
  /** Stubs whose attempts found no container: one pump a second later, not one per attempt. */
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private sweeps = 0;
  private readonly stopWatching: () => void;
  /** What other gateways on a shared store change: their puts, claims, ends and dead attempts. */
  private readonly others: OtherGateways;
  private closed = false;

  constructor(private readonly o: DispatcherOptions) {
    this.sweeper = setInterval(() => this.background(this.sweep(), "sweep"), o.sweepIntervalMs ?? 1000);
    this.sweeper.unref();
    // A worker killed with -9 leaves its containers running with nobody to report them; the
    // gateway marks them lost, and the attempts open on them must not wait for an answer.
    this.stopWatching = o.autoscaler.onContainerExit((containerId, reason) => {
      for (const live of this.running.values()) {
        if (live.slot.containerId !== containerId || live.cancelled) continue;
        live.abort.abort(new ContainerLost(containerId, reason));
      }
      // Attempts waiting to resume there (cut off by a gateway's stop, or a lost exchange) may go
      // anywhere now; again a moment later, for a lost exchange whose retry is written after this.
      this.background(this.releaseResumes(containerId), "release resumes");
      setTimeout(() => this.background(this.releaseResumes(containerId), "release resumes"), RELEASE_AGAIN_MS).unref();
    });
    this.others = new OtherGateways({
      store: o.store, ...(o.logger && { logger: o.logger }), events: this.events,
      isRunning: (taskId) => this.running.has(taskId),
      runningIds: () => [...this.running.keys()],
      stopRunning: (taskId) => this.stopRunning(taskId),
      counted: () => [...this.depth.keys()],
      serves: (stub) => o.serves?.(stub) ?? true,
      closed: () => this.closed,
      recount: (stubId, waiting) => {
        const n = waiting + (this.active.get(stubId) ?? 0);
        if (n > 0) this.depth.set(stubId, n);
        else this.depth.delete(stubId);
      },
      count: (stubId, delta) => this.count(stubId, delta),
      outcome: (stubId, status) => this.outcome(stubId, status, null),
      emit: (taskId, stub) => this.emit(taskId, stub),
      pump: (stub) => this.pump(stub),
      pumpWhenResumesLapse: (requeued) => this.pumpWhenResumesLapse(requeued),
      background: (work, what) => this.background(work, what),
    });
  }

  /**
   * Runs work nobody awaits. A store error there (disk full, a busy database) is logged, never an
   * unhandled rejection that ends the gateway; the task stays in the store and is picked up again.
   */
  private background(work: Promise<unknown>, what: string): void {
    work.catch((err: unknown) => this.o.logger?.error({ err, what }, "task dispatcher: background work failed"));
  }

  /** Re-queues attempts cut off by the last stop and resumes every queue. */
  async recover(): Promise<void> {
    const cutOff = await this.o.store.tasks.requeueRunning();
    const ended = cutOff.filter((t) => t.status === "ERROR");
    if (cutOff.length > 0) {
      this.o.logger?.warn({ retried: cutOff.length - ended.length, ended: ended.length }, "tasks that were running when the gateway stopped are retried (or ended, past their maxRetries)");
    }
    for (const t of ended) {
      const stub = await this.o.store.stubs.getAny(t.stubId);
      if (stub) this.background(this.emit(t.id, stub), "callback");
    }
    for (const stubId of await this.o.store.tasks.stubsWithPending()) {
      // Waiting only: RUNNING rows there are other gateways' (this one's were just re-queued).
      this.depth.set(stubId, await this.o.store.tasks.waiting(stubId));
      const stub = await this.o.store.stubs.getAny(stubId);
      if (stub) this.background(this.pump(stub), "pump");
    }
    this.pumpWhenResumesLapse(cutOff);
  }

  /** Attempts waiting to resume on a container that exited go to any container, and their stubs are pumped. */
  private async releaseResumes(containerId: string): Promise<void> {
    for (const stubId of await this.o.store.tasks.releaseResumes(containerId)) {
      const stub = await this.o.store.stubs.getAny(stubId);
      if (stub) this.background(this.pump(stub), "pump");
    }
  }

  /**
   * Attempts cut off by a gateway's stop are first offered to the containers that ran them (the
   * store's RESUME_ELSEWHERE_AFTER_MS); should those be gone, their stubs are pumped again once
   * any container may take them.
   */
  pumpWhenResumesLapse(requeued: readonly { stubId: string; status: string }[]): void {
    for (const stubId of new Set(requeued.filter((t) => t.status === "RETRY").map((t) => t.stubId))) {
      setTimeout(() => {
        if (this.closed) return;
        this.background(this.o.store.stubs.getAny(stubId).then((stub) => stub && this.pump(stub)), "pump");
      }, RESUME_ELSEWHERE_AFTER_MS + 50).unref();
    }
  }

  /** Calls `listener` with each attempt's outcome: a task that ended, or RETRY (metrics). */
  onOutcome(listener: (stubId: string, status: TaskStatus, startedAt: string | null) => void): () => void {
    return this.outcomes.on("outcome", (e) => listener(e.stubId, e.status, e.startedAt));
  }

  /** Tasks waiting to start (queued, or due to retry), per stub id (metrics). */
  queued(): Map<string, number> {
    return new Map([...this.depth].map(([id, n]) => [id, n - (this.active.get(id) ?? 0)] as const).filter(([, n]) => n > 0));
  }

  private outcome(stubId: string, status: TaskStatus, startedAt: string | null): void {
    this.outcomes.emit("outcome", { stubId, status, startedAt });
  }

  /** Tasks of the stub not ended yet (queued, running or waiting to retry). */
  inflight(stubId: string): number {
    return this.depth.get(stubId) ?? 0;
  }

  async put(stub: Stub, input: unknown): Promise<Task> {
    // Nothing of the stub waiting and a slot free: the task is written RUNNING on that slot and
    // starts as soon as it is stored (no claim). Else it queues (PENDING) and an attempt claims it.
    const slot = this.closed || this.inflight(stub.id) > (this.active.get(stub.id) ?? 0) ? undefined : this.o.autoscaler.tryAcquire(stub);
    // Counted before the write, so puts arriving together all see each other (maxPendingTasks
    // is checked against this count synchronously, before put is called).
    this.count(stub.id, 1);
    if (!slot) {
      let task: Task;
      try {
        task = await this.o.store.tasks.create(stub.workspaceId, stub.id, input, stub.config.taskPolicy);
      } catch (err) {
        this.count(stub.id, -1);
        throw err;
      }
      this.background(this.pump(stub), "pump");
      return task;
    }
    this.began(stub.id, 1);
    let claimed: ClaimedTask;
    try {
      claimed = await this.o.store.tasks.create(stub.workspaceId, stub.id, input, stub.config.taskPolicy, { containerId: slot.containerId });
    } catch (err) {
      this.count(stub.id, -1);
      this.began(stub.id, -1);
      slot.release();
      throw err;
    }
    const { inputJson, ...task } = claimed;
    this.background(this.execute(stub, task, slot, inputJson), "execute");
    return task;
  }

  /** Cancels a pending or running task; true if it was still live. */
  async cancel(task: Task): Promise<boolean> {
    const ended = await this.end(task, "CANCELLED", { error: "cancelled" }, false);
    await this.stopRunning(task.id);
    if (ended) await this.emit(task.id);
    return ended;
  }

  /** Stops this gateway's attempt of a cancelled task, if it runs one (cancelled here, or on another gateway). */
  private async stopRunning(taskId: string): Promise<void> {
    const live = this.running.get(taskId);
    if (!live || live.cancelled) return;
    live.cancelled = true;
    // Tell the runner (its handler sees ctx.signal abort), then drop our end of the request.
    await cancelInvocation(live.slot.runner, taskId);
    live.abort.abort();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.stopWatching();
    this.others.close();
    for (const live of this.running.values()) live.abort.abort();
  }

  /** Starts as many attempts as there are tasks waiting, bounded by what the stub may run at once. */
  async pump(stub: Stub): Promise<void> {
    if (this.closed) return;
    // A shared store and no worker here for the stub: the gateways that have one run its tasks
    // (they hear of them); this one would only hold container requests it cannot place. A worker
    // that connects here later is found by the next look (other-gateways.ts, every 5 s).
    if (this.o.store.tasks.shared && this.o.serves && !this.o.serves(stub)) return;
    const { autoscaler, workers, concurrentRequests } = stub.config;
    const capacity = autoscaler.maxContainers * Math.max(workers, concurrentRequests);
    // maxPendingTasks bounds the waiters the stub's pool takes: more attempts would be refused at once.
    const wanted = Math.min(this.inflight(stub.id), capacity, stub.config.maxPendingTasks);
    for (let n = this.attempts.get(stub.id) ?? 0; n < wanted; n++) this.background(this.attempt(stub), "attempt");
  }

  private async attempt(stub: Stub): Promise<void> {
    this.began(stub.id, 0);
    let slot: Slot;
    try {
      slot = await this.o.autoscaler.acquire(stub);
    } catch (err) {
      this.ended(stub.id, false);
      const why = (err as Error).message;
      if (this.noContainer.get(stub.id) !== why) this.o.logger?.warn({ stub: stub.name, err: why }, "no container for queued tasks yet");
      this.noContainer.set(stub.id, why);
      // One retry per stub, whatever the number of attempts refused: each scheduling its own pump
      // would start that many attempts each a second later, and the rate would double every second.
      if (!this.closed && !this.retryTimers.has(stub.id)) {
        const timer = setTimeout(() => {
          this.retryTimers.delete(stub.id);
          this.background(this.pump(stub), "pump");
        }, 1000);
        timer.unref();
        this.retryTimers.set(stub.id, timer);
      }
      return;
    }
    this.noContainer.delete(stub.id);
    const claimed = await this.o.store.tasks.claimNext(stub.id, slot.containerId).catch(() => undefined);
    if (!claimed) {
      slot.release();
      this.ended(stub.id, false);
      // Another gateway took it: this one's count is high by one (or more).
      if (this.o.store.tasks.shared) this.background(this.others.resync(stub.id), "resync");
      return;
    }
    this.active.set(stub.id, (this.active.get(stub.id) ?? 0) + 1);
    const { inputJson, ...task } = claimed;
    await this.emit(task.id, undefined, task).catch(() => undefined);
    await this.execute(stub, task, slot, inputJson);
  }

  /** An attempt (waiting for a slot or running) starts; `running` of them hold a task already. */
  private began(stubId: string, running: 0 | 1 | -1): void {
    if (running === -1) {
      this.ended(stubId, true);
      return;
    }
    this.attempts.set(stubId, (this.attempts.get(stubId) ?? 0) + 1);
    if (running === 1) this.active.set(stubId, (this.active.get(stubId) ?? 0) + 1);
  }

  private ended(stubId: string, held: boolean): void {
    const n = (this.attempts.get(stubId) ?? 1) - 1;
    if (n > 0) this.attempts.set(stubId, n);
    else this.attempts.delete(stubId);
    if (!held) return;
    const a = (this.active.get(stubId) ?? 1) - 1;
    if (a > 0) this.active.set(stubId, a);
    else this.active.delete(stubId);
  }

  /** Runs a claimed task on its slot, then frees the slot and looks for more work. */
  private async execute(stub: Stub, task: Task, slot: Slot, inputJson?: string): Promise<void> {
    let freed = false;
    // The runner answered: its slot takes the next task while the outcome is being written (the
    // next claim joins the same group commit instead of waiting for this one).
    const free = () => {
      if (freed) return;
      freed = true;
      slot.release();
      this.ended(stub.id, true);
      this.background(this.pump(stub), "pump");
    };
    try {
      await this.run(stub, task, slot, inputJson, free);
    } finally {
      free();
    }
  }

  private count(stubId: string, delta: number): void {
    const n = (this.depth.get(stubId) ?? 0) + delta;
    if (n > 0) this.depth.set(stubId, n);
    else this.depth.delete(stubId);
  }

  /** Ends a task in the store; counts it out of its queue when this call ended it. */
  /**
   * `untilStored`: an attempt's outcome waits out a lost database (untilStored); a caller's cancel
   * does not (it answers 503, and the caller tries again).
   */
  private async end(
    task: Pick<Task, "id" | "stubId" | "startedAt">, status: "COMPLETE" | "ERROR" | "TIMEOUT" | "CANCELLED", fields: { result?: unknown; error?: string }, waitForStore = true,
  ): Promise<boolean> {
    const finish = () => this.o.store.tasks.finish(task.id, status, fields);
    const ended = await (waitForStore ? untilStored(finish, () => this.closed) : finish());
    if (ended) {
      this.count(task.stubId, -1);
      this.outcome(task.stubId, status, task.startedAt);
    }
    return ended;
  }

  /** `inputJson`: the input as stored, when the claim read it (else it is read here). */
  private async run(stub: Stub, task: Task, slot: Slot, inputJson?: string, answered?: () => void): Promise<void> {
    const live: Running = { abort: new AbortController(), slot, cancelled: false };
    this.running.set(task.id, live);
    const timeoutMs = stub.config.taskPolicy.timeout > 0 ? stub.config.taskPolicy.timeout * 1000 : 0;
    const timer = timeoutMs > 0 ? setTimeout(() => live.abort.abort(new CallTimedOut()), timeoutMs) : undefined;
    const tasks = this.o.store.tasks;
    try {
      const input = inputJson ?? JSON.stringify((await tasks.input(task.id)) ?? null);
      const outcome = await runTask(slot.runner, { id: task.id, inputJson: input, retries: task.retries }, live.abort.signal);
      const action = actionFor(outcome, {
        cancelled: live.cancelled, closing: this.closed, containerId: slot.containerId, timeoutSeconds: stub.config.taskPolicy.timeout,
        containerLive: this.o.autoscaler.containersOf(stub.id).some((c) => c.id === slot.containerId),
      });
      // The runner answered: its slot may take the next task while the outcome is written.
      if (outcome.kind === "ok" || outcome.kind === "inputInvalid" || outcome.kind === "handlerError") answered?.();
      switch (action.kind) {
        case "complete":
          await this.end(task, "COMPLETE", { result: action.result });
          break;
        case "refused":
          await this.end(task, "ERROR", { error: action.error });
          break;
        case "timedOut":
          await cancelInvocation(slot.runner, task.id);
          await this.end(task, "TIMEOUT", { error: action.error });
          break;
        case "retry":
          if (action.stack !== undefined) this.stacks.set(task.id, action.stack);
          await this.failed(stub, task, action.error, action.how);
          break;
        case "leave":
          break;
      }
    } catch (err) {
      // Reading the input failed (the store): the attempt is retried like a lost one.
      if (!live.cancelled) await this.failed(stub, task, `the attempt failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      this.running.delete(task.id);
      await this.emit(task.id, stub);
    }
  }

  private async failed(stub: Stub, task: Task, error: string, how: RetryHow = {}): Promise<void> {
    const current = await untilStored(() => this.o.store.tasks.getAny(task.id), () => this.closed);
    if (!current || current.status !== "RUNNING") return;
    if (how.uncounted || current.retries < current.maxRetries) {
      const delay = how.uncounted ? BUSY_RETRY_MS : Math.min(30_000, (this.o.retryBaseMs ?? 500) * 2 ** current.retries);
      await untilStored(() => this.o.store.tasks.retry(task.id, error, delay, how), () => this.closed);
      this.outcome(task.stubId, "RETRY", current.startedAt);
      setTimeout(() => this.background(this.pump(stub), "pump"), delay + 5).unref();
      if (how.resumeOn !== undefined) this.pumpWhenResumesLapse([{ stubId: task.stubId, status: "RETRY" }]);
    } else {
      await this.end(task, "ERROR", { error });
    }
  }

  private async emit(taskId: string, stub?: Stub, known?: Task): Promise<void> {
    // Read the task only for someone: a subscriber (SSE, a function call) or a callback.
    if (this.events.listenerCount(taskId) === 0 && !stub?.config.callbackUrl) {
      this.stacks.delete(taskId);
      return;
    }
    const task = known ?? (await this.o.store.tasks.getAny(taskId));
    if (!task) return;
    this.events.emit(taskId, task);
    if (isTerminal(task)) this.stacks.delete(taskId);
    const url = stub?.config.callbackUrl;
    if (url && isTerminal(task)) {
      const key = await this.o.store.workspaces.signingKey(task.workspaceId);
      if (key) void sendCallback(url, key, task, this.o.logger);
    }
  }

  /** Expires tasks that waited past their TTL; now and then, takes over the attempts of gateways gone (a shared store). */
  private async sweep(): Promise<void> {
    for (const t of await this.o.store.tasks.expireDue(this.o.waitingFor).catch(() => [])) {
      this.count(t.stubId, -1);
      this.outcome(t.stubId, "EXPIRED", null);
      await this.emit(t.id);
    }
    if (++this.sweeps % ORPHAN_SWEEP_EVERY === 0) await this.others.sweep();
  }
}

export const isTerminal = (task: Task): boolean => TERMINAL_TASK_STATUSES.includes(task.status);
