/**
 * Runs invocations of one workload: a fixed number of slots (BETA9_CONCURRENCY), one
 * AbortController per invocation (so /cancel and a dropped connection reach ctx.signal), input
 * validation, and turning results and throws into protocol replies, or into streams (stream.ts)
 * when an endpoint's handler returns one.
 */
import type { InvocationContext, WorkloadDescriptor } from "@beta9/protocol";
import { isResponse, streamableOf, type Streamable } from "./stream.js";
import { runAsTask } from "./task-log.js";

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

const WRAPPER: Record<string, string> = { endpoint: "endpoint()", taskqueue: "taskQueue()", function: "fn()", schedule: "schedule()" };

/** A short description of a value that should have been something else, for error messages. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  const stream = streamableOf(value);
  if (stream) return stream.what;
  if (typeof value === "object") return `an object (${value.constructor?.name ?? "no prototype"})`;
  return `a ${typeof value}`;
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

  /** Whether this workload is a web app (its handler takes a Request and answers a Response). */
  get webApp(): boolean {
    return this.workload.config?.webApp === true;
  }

  private context(invocation: Invocation): InvocationContext {
    return {
      taskId: invocation.taskId,
      containerId: this.options.containerId,
      retries: invocation.retries,
      signal: invocation.controller.signal,
      onStartValue: this.options.onStartValue,
    };
  }

  /**
   * Validates `input` and calls the handler; never throws. With `stream` (an endpoint's /invoke), a
   * handler that returns a Response, a ReadableStream or an async iterable gets it back to stream;
   * elsewhere that is a STREAM_NOT_SUPPORTED reply, since a task stores its result as JSON.
   */
  run(invocation: Invocation, input: unknown): Promise<Reply>;
  run(invocation: Invocation, input: unknown, options: { stream: boolean }): Promise<Reply | Streamable>;
  async run(invocation: Invocation, input: unknown, options: { stream?: boolean } = {}): Promise<Reply | Streamable> {
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
    let value: unknown;
    try {
      value = await runAsTask(invocation.taskId, () => workload.handler(input, this.context(invocation)));
    } catch (err) {
      return this.failed(invocation, err);
    }
    const stream = streamableOf(value);
    if (stream === undefined) return resultReply(value);
    if (options.stream && workload.kind === "endpoint") return stream;
    const where = `${WRAPPER[workload.kind] ?? workload.kind} "${workload.name}"`;
    const why = workload.kind === "endpoint" ? "this call cannot stream" : "its tasks store the result as JSON";
    return errorReply(500, "STREAM_NOT_SUPPORTED",
      `${where} returned ${stream.what}: only endpoint() handlers stream (${why}); return a JSON value instead, e.g. the chunks collected in an array`);
  }

  /** Calls a web app's handler with `request`; a Response comes back to stream, anything else is a 502. */
  async runWeb(invocation: Invocation, request: Request): Promise<Reply | Streamable> {
    let value: unknown;
    try {
      value = await runAsTask(invocation.taskId, () => this.workload.handler(request, this.context(invocation)));
    } catch (err) {
      return this.failed(invocation, err);
    }
    if (isResponse(value)) return { kind: "response", what: "a Response", response: value };
    return errorReply(502, "WEBAPP_BAD_RESPONSE",
      `web app "${this.workload.name}" answered ${request.method} ${new URL(request.url).pathname} with ${describe(value)}; return a Response (new Response(body, { status, headers }), or c.json(…) in Hono)`);
  }

  /** Whether this workload is a realtime endpoint (its handler takes a WebSocket). */
  get realtime(): boolean {
    return this.workload.config?.realtime === true;
  }

  /** Calls a realtime handler with its socket; resolves when it returns, with what it threw if it did. */
  async runRealtime(invocation: Invocation, socket: unknown): Promise<Error | undefined> {
    try {
      await runAsTask(invocation.taskId, () => this.workload.handler(socket, this.context(invocation)));
      return undefined;
    } catch (err) {
      this.failed(invocation, err);
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private failed(invocation: Invocation, err: unknown): Reply {
    // The container's log gets the stack too, so `beta9 container logs` shows where it failed.
    runAsTask(invocation.taskId, () => process.stderr.write(`task ${invocation.taskId} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`));
    return handlerErrorReply(err);
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
