/**
 * Runs invocations of one workload: a fixed number of slots (BETA9_CONCURRENCY), one
 * AbortController per invocation (so /cancel and a dropped connection reach ctx.signal), input
 * validation, and turning results and throws into protocol replies.
 */
import type { InvocationContext, WorkloadDescriptor } from "@beta9/protocol";

/** A reply ready to send: status and the already-serialized JSON body. */
export interface Reply {
  status: number;
  json: string;
}

/** One invocation holding a slot; `end()` must be called exactly once when it is over. */
export interface Invocation {
  readonly taskId: string;
  /** Failed attempts of this task before this one. */
  readonly retries: number;
  readonly controller: AbortController;
  end(): void;
}

export interface InvokerOptions {
  concurrency: number;
  containerId: string;
  onStartValue: unknown;
}

function errorReply(status: number, code: string, message: string, extra: Record<string, unknown> = {}): Reply {
  return { status, json: JSON.stringify({ error: { code, message, ...extra } }) };
}

function handlerErrorReply(err: unknown, prefix = ""): Reply {
  if (err instanceof Error) return errorReply(500, "HANDLER_ERROR", prefix + err.message, { stack: err.stack });
  return errorReply(500, "HANDLER_ERROR", prefix + String(err));
}

/**
 * `{ result }` as JSON (undefined becomes null), or a HANDLER_ERROR reply when the value cannot
 * be serialized (a BigInt, a cycle, a toJSON that throws).
 *
 * @example
 * resultReply({ label: "cat" }).json; // '{"result":{"label":"cat"}}'
 */
export function resultReply(result: unknown): Reply {
  try {
    return { status: 200, json: JSON.stringify({ result: result === undefined ? null : result }) };
  } catch (err) {
    return handlerErrorReply(err, "the handler's result is not JSON-serializable: ");
  }
}

export class Invoker {
  private active = 0;
  private readonly byTask = new Map<string, Set<AbortController>>();
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly workload: WorkloadDescriptor, private readonly options: InvokerOptions) {}

  get inFlight(): number {
    return this.active;
  }

  /**
   * Takes a slot for `taskId`, or returns undefined when all slots are taken.
   *
   * @example
   * const invocation = invoker.begin("task-1");
   * if (invocation) try { reply = await invoker.run(invocation, input); } finally { invocation.end(); }
   */
  begin(taskId: string, retries = 0): Invocation | undefined {
    if (this.active >= this.options.concurrency) return undefined;
    this.active++;
    const controller = new AbortController();
    const set = this.byTask.get(taskId) ?? new Set<AbortController>();
    set.add(controller);
    this.byTask.set(taskId, set);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      set.delete(controller);
      if (set.size === 0 && this.byTask.get(taskId) === set) this.byTask.delete(taskId);
      this.active--;
      if (this.active === 0) this.notifyIdle();
    };
    return { taskId, retries, controller, end };
  }

  /** Validates `input` and calls the handler; never throws. */
  async run(invocation: Invocation, input: unknown): Promise<Reply> {
    const { workload } = this;
    if (typeof workload.validateInput === "function") {
      let problem: string | undefined;
      try {
        problem = workload.validateInput(input);
      } catch (err) {
        return handlerErrorReply(err, "validateInput threw: ");
      }
      if (problem !== undefined) return errorReply(422, "INPUT_INVALID", problem);
    }
    const ctx: InvocationContext = {
      taskId: invocation.taskId,
      containerId: this.options.containerId,
      retries: invocation.retries,
      signal: invocation.controller.signal,
      onStartValue: this.options.onStartValue,
    };
    try {
      return resultReply(await workload.handler(input, ctx));
    } catch (err) {
      // The container's log gets the stack too, so `beta9 container logs` shows where it failed.
      process.stderr.write(`task ${invocation.taskId} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      return handlerErrorReply(err);
    }
  }

  /** Aborts every running invocation of `taskId`; false when none is running. */
  cancel(taskId: string, reason: unknown = new DOMException(`task ${taskId} was cancelled`, "AbortError")): boolean {
    const set = this.byTask.get(taskId);
    if (!set || set.size === 0) return false;
    for (const controller of set) controller.abort(reason);
    return true;
  }

  /** Aborts every running invocation (used when the shutdown grace period runs out). */
  abortAll(reason: unknown): void {
    for (const set of this.byTask.values()) for (const controller of set) controller.abort(reason);
  }

  /** Resolves true once no invocation is running, or false after `timeoutMs`. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
        resolve(false);
      }, timeoutMs);
      const onIdle = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(onIdle);
    });
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
