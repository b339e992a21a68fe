/**
 * The task dispatcher: durable tasks for task queues. A task accepted with 200 is a row in the
 * store before the answer goes out, so neither a gateway restart nor a worker's death loses it:
 * attempts that were running when the gateway stopped are RETRY at start (not counted), and an attempt
 * whose container dies (the open /invoke request fails) is retried.
 *
 * Each attempt: take a slot from the autoscaler (starting containers as the queue deepens), claim
 * the oldest due task, POST it to the runner, and record the outcome: COMPLETE; a handler error
 * or a lost container is RETRY (retries counted, last error, next attempt time) for up to
 * maxRetries attempts with exponential backoff, then ERROR; TIMEOUT after the policy's
 * timeout; CANCELLED when asked (the runner's signal is aborted); EXPIRED when it waited past its
 * TTL.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { request } from "undici";
import { TASK_ID_HEADER, TERMINAL_TASK_STATUSES, type Stub, type Task } from "@beta9/protocol";
import type { Store } from "../store/types.js";
import type { Autoscaler, Slot } from "../workloads/autoscaler.js";
import { sendCallback } from "./callback.js";

export interface DispatcherOptions {
  store: Store;
  autoscaler: Autoscaler;
  logger?: Logger;
  /** First retry delay; doubles per retry up to 30 s (default 500 ms). */
  retryBaseMs?: number;
  sweepIntervalMs?: number;
}

interface Running {
  abort: AbortController;
  slot: Slot;
  cancelled: boolean;
  /** Set when the gateway saw the attempt's container exit (its worker died, OOM…). */
  lost?: string;
}

export class TaskDispatcher {
  readonly events = new EventEmitter();
  private readonly running = new Map<string, Running>();
  /** Attempts waiting for a slot, per stub. */
  private readonly waiting = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly stopWatching: () => void;
  private closed = false;

  constructor(private readonly o: DispatcherOptions) {
    this.events.setMaxListeners(0);
    this.sweeper = setInterval(() => void this.sweep(), o.sweepIntervalMs ?? 1000);
    this.sweeper.unref();
    // A worker killed with -9 leaves its containers running with nobody to report them; the
    // gateway marks them lost, and the attempts open on them must not wait for an answer.
    this.stopWatching = o.autoscaler.onContainerExit((containerId, reason) => {
      for (const live of this.running.values()) {
        if (live.slot.containerId !== containerId || live.cancelled) continue;
        live.lost = reason;
        live.abort.abort(new Error(`container ${containerId} exited: ${reason}`));
      }
    });
  }

  /** Re-queues attempts cut off by the last stop and resumes every queue. */
  async recover(): Promise<void> {
    const requeued = await this.o.store.tasks.requeueRunning();
    if (requeued > 0) this.o.logger?.warn({ requeued }, "tasks that were running when the gateway stopped are queued again");
    for (const stubId of await this.o.store.tasks.stubsWithPending()) {
      const stub = await this.o.store.stubs.getAny(stubId);
      if (stub) void this.pump(stub);
    }
  }

  async put(stub: Stub, input: unknown): Promise<Task> {
    const task = await this.o.store.tasks.create(stub.workspaceId, stub.id, input, stub.config.taskPolicy);
    void this.pump(stub);
    return task;
  }

  /** Cancels a pending or running task; true if it was still live. */
  async cancel(task: Task): Promise<boolean> {
    const ended = await this.o.store.tasks.finish(task.id, "CANCELLED", { error: "cancelled" });
    const live = this.running.get(task.id);
    if (live) {
      live.cancelled = true;
      // Tell the runner (its handler sees ctx.signal abort), then drop our end of the request.
      await request(`${live.slot.origin}/cancel/${task.id}`, { method: "POST" }).then((r) => r.body.dump(), () => undefined);
      live.abort.abort();
    }
    if (ended) await this.emit(task.id);
    return ended;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.stopWatching();
    for (const live of this.running.values()) live.abort.abort();
  }

  /** Starts as many attempts as there are tasks waiting, bounded by what the stub may run at once. */
  async pump(stub: Stub): Promise<void> {
    if (this.closed) return;
    const { autoscaler, workers, concurrentRequests } = stub.config;
    const capacity = autoscaler.maxContainers * Math.max(workers, concurrentRequests);
    const inflight = await this.o.store.tasks.inflight(stub.id);
    const active = (this.waiting.get(stub.id) ?? 0) + [...this.running.values()].filter((r) => r.slot.stubId === stub.id).length;
    for (let n = active; n < Math.min(inflight, capacity); n++) void this.attempt(stub);
  }

  private async attempt(stub: Stub): Promise<void> {
    this.waiting.set(stub.id, (this.waiting.get(stub.id) ?? 0) + 1);
    let slot: Slot;
    try {
      slot = await this.o.autoscaler.acquire(stub);
    } catch (err) {
      this.o.logger?.warn({ stub: stub.name, err: (err as Error).message }, "no container for queued tasks yet");
      this.waiting.set(stub.id, (this.waiting.get(stub.id) ?? 1) - 1);
      if (!this.closed) setTimeout(() => void this.pump(stub), 1000).unref();
      return;
    }
    this.waiting.set(stub.id, (this.waiting.get(stub.id) ?? 1) - 1);
    const task = await this.o.store.tasks.claimNext(stub.id, slot.containerId).catch(() => undefined);
    if (!task) {
      slot.release();
      return;
    }
    await this.emit(task.id);
    await this.run(stub, task, slot);
    slot.release();
    void this.pump(stub);
  }

  private async run(stub: Stub, task: Task, slot: Slot): Promise<void> {
    const live: Running = { abort: new AbortController(), slot, cancelled: false };
    this.running.set(task.id, live);
    const timeoutMs = stub.config.taskPolicy.timeout > 0 ? stub.config.taskPolicy.timeout * 1000 : 0;
    const timer = timeoutMs > 0 ? setTimeout(() => live.abort.abort(new Error("timeout")), timeoutMs) : undefined;
    const tasks = this.o.store.tasks;
    try {
      const res = await request(`${slot.origin}/invoke`, {
        method: "POST", headers: { "content-type": "application/json", [TASK_ID_HEADER]: task.id },
        body: JSON.stringify({ input: await tasks.input(task.id) }), signal: live.abort.signal, headersTimeout: 0, bodyTimeout: 0,
      });
      const body = (await res.body.json().catch(() => ({}))) as { result?: unknown; error?: { message?: string } };
      if (res.statusCode === 200) await tasks.finish(task.id, "COMPLETE", { result: body.result ?? null });
      else if (res.statusCode === 422) await tasks.finish(task.id, "ERROR", { error: body.error?.message ?? "invalid input" });
      else await this.failed(stub, task, body.error?.message ?? `the runner answered ${res.statusCode}`);
    } catch (err) {
      if (live.cancelled) return; // already CANCELLED
      if (live.lost !== undefined) {
        await this.failed(stub, task, `the container was lost (${live.lost}) during the attempt`);
      } else if (live.abort.signal.aborted && String(live.abort.signal.reason).includes("timeout")) {
        await request(`${slot.origin}/cancel/${task.id}`, { method: "POST" }).then((r) => r.body.dump(), () => undefined);
        await tasks.finish(task.id, "TIMEOUT", { error: `ran longer than its timeout of ${stub.config.taskPolicy.timeout} s` });
      } else {
        // The container or its worker went away mid-attempt.
        await this.failed(stub, task, `the container was lost: ${(err as Error).message}`);
      }
    } finally {
      clearTimeout(timer);
      this.running.delete(task.id);
      await this.emit(task.id, stub);
    }
  }

  private async failed(stub: Stub, task: Task, error: string): Promise<void> {
    const current = await this.o.store.tasks.getAny(task.id);
    if (!current || current.status !== "RUNNING") return;
    if (current.retries < current.maxRetries) {
      const delay = Math.min(30_000, (this.o.retryBaseMs ?? 500) * 2 ** current.retries);
      await this.o.store.tasks.retry(task.id, error, delay);
      setTimeout(() => void this.pump(stub), delay + 5).unref();
    } else {
      await this.o.store.tasks.finish(task.id, "ERROR", { error });
    }
  }

  private async emit(taskId: string, stub?: Stub): Promise<void> {
    const task = await this.o.store.tasks.getAny(taskId);
    if (!task) return;
    this.events.emit(taskId, task);
    const url = stub?.config.callbackUrl;
    if (url && isTerminal(task)) {
      const key = await this.o.store.workspaces.signingKey(task.workspaceId);
      if (key) void sendCallback(url, key, task, this.o.logger);
    }
  }

  /** Expires tasks that waited past their TTL. */
  private async sweep(): Promise<void> {
    for (const t of await this.o.store.tasks.expireDue().catch(() => [])) await this.emit(t.id);
  }
}

export const isTerminal = (task: Task): boolean => TERMINAL_TASK_STATUSES.includes(task.status);
