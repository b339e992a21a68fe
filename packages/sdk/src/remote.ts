/**
 * Calling workloads from code: `square.remote({ n: 3 })`, `resize.put(input)`,
 * `for await (const r of square.map(inputs))`. The client comes from `options.client`, or from
 * BETA9_GATEWAY and BETA9_TOKEN in the environment, or from the CLI's current context.
 */
import type { Task } from "@beta9/protocol";
import type { Client } from "./client.js";

/** `result()` of a task that ended ERROR, TIMEOUT, CANCELLED or EXPIRED. */
export class TaskFailedError extends Error {
  readonly code = "TASK_FAILED";
  constructor(readonly task: Task) {
    super(`task ${task.id} ended ${task.status}: ${task.error ?? "no detail"}`);
    this.name = "TaskFailedError";
  }
}

const TERMINAL = new Set(["COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"]);

/**
 * A task put on a queue. Reads as its id where a string is expected (`${task}`, JSON), so code
 * written for the id keeps working.
 */
export class TaskHandle<Out = unknown> {
  constructor(
    readonly id: string,
    private readonly use: <T>(fn: (client: Client) => Promise<T>) => Promise<T>,
  ) {}

  /** The task as the gateway has it now (status, retries, error, timings). */
  status(): Promise<Task> {
    return this.use((client) => client.getTask(this.id));
  }

  /**
   * The handler's result. `wait` (default true) waits for the task to end; without it, a task
   * still queued or running gives `undefined`. A task that ended otherwise than COMPLETE throws
   * a TaskFailedError (code TASK_FAILED) naming its status and error.
   */
  async result(options: { wait?: boolean } = {}): Promise<Out | undefined> {
    const task = await this.use((client) => (options.wait === false ? client.getTask(this.id) : client.waitForTask(this.id)));
    if (task.status === "COMPLETE") return task.result as Out;
    if (!TERMINAL.has(task.status)) return undefined;
    throw new TaskFailedError(task);
  }

  /** Cancels it if it has not ended (a running handler sees ctx.signal abort). */
  cancel(): Promise<Task> {
    return this.use((client) => client.cancelTask(this.id));
  }

  toString(): string {
    return this.id;
  }

  toJSON(): string {
    return this.id;
  }

  [Symbol.toPrimitive](): string {
    return this.id;
  }
}

export interface CallOptions {
  client?: Client;
  /** A deployed version (default: latest). */
  version?: number;
}

export interface MapOptions extends CallOptions {
  /**
   * Calls in flight at once (default 10); the autoscaler starts containers to match. Never more
   * than the queue takes (maxPendingTasks): a 429 QUEUE_FULL lowers it and the call is retried.
   */
  concurrency?: number;
}

/**
 * A client for one operation: the given one, or one from BETA9_GATEWAY / BETA9_TOKEN, else from
 * the CLI's current context (~/.beta9/config.json, what `beta9 up` writes); `close` is a no-op
 * for a given client.
 */
export async function openClient(options: Pick<CallOptions, "client">): Promise<{ client: Client; close(): Promise<void> }> {
  if (options.client) return { client: options.client, close: async () => undefined };
  // Loaded on first use: code deployed into containers (which bundles the SDK) never pays for it.
  const { defaultClientOptions, NO_CLIENT_CONFIGURED } = await import("./config-file.js");
  const config = defaultClientOptions();
  if (!config) throw new Error(NO_CLIENT_CONFIGURED);
  const { Client: ClientClass } = await import("./client.js");
  const client = new ClientClass(config);
  return { client, close: () => client.close() };
}

/** Runs `fn` with the given client, or with a default one (openClient) that is closed afterwards. */
export async function withClient<T>(options: Pick<CallOptions, "client">, fn: (client: Client) => Promise<T>): Promise<T> {
  const { client, close } = await openClient(options);
  try {
    return await fn(client);
  } finally {
    await close();
  }
}

/** The gateway's backpressure: 429 QUEUE_FULL, the stub holds maxPendingTasks tasks and took none. */
export function isQueueFull(err: unknown): err is Error & { status: 429; code: "QUEUE_FULL"; retryAfterMs?: number; details?: unknown } {
  const e = err as { status?: unknown; code?: unknown } | null;
  return typeof e === "object" && e !== null && e.status === 429 && e.code === "QUEUE_FULL";
}

/** The bound a QUEUE_FULL names (`details.limit`), if it does. */
function queueLimit(err: { details?: unknown }): number | undefined {
  const limit = (err.details as { limit?: unknown } | undefined)?.limit;
  return typeof limit === "number" && Number.isInteger(limit) && limit > 0 ? limit : undefined;
}

/** Retries of one call refused with QUEUE_FULL before its error is thrown (waits of about 1, 2, 4, 8 s). */
export const QUEUE_FULL_RETRIES = 4;

/**
 * How long to wait before try `attempt + 1` after a QUEUE_FULL: at least the answer's Retry-After
 * (500 ms without one), doubling per attempt up to 8 s (or the Retry-After, if longer), plus up to
 * 10% so that callers refused together do not come back together.
 */
export function queueFullDelay(err: { retryAfterMs?: number }, attempt: number): number {
  const base = err.retryAfterMs ?? 500;
  const delay = Math.min(base * 2 ** attempt, Math.max(base, 8000));
  return delay + delay * 0.1 * Math.random();
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Calls `call`, retrying it (bounded: QUEUE_FULL_RETRIES) while the gateway answers QUEUE_FULL. */
export async function retryWhileQueueFull<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isQueueFull(err) || attempt >= QUEUE_FULL_RETRIES) throw err;
      await sleep(queueFullDelay(err, attempt));
    }
  }
}

/**
 * How many calls may be in flight: starts at `cap`; a QUEUE_FULL lowers it to the calls still in
 * flight (and `cap` to the bound the answer names), each call that ends well raises it again by
 * one, up to `cap`. Waiters are served in order; a call being retried goes first.
 */
class Window {
  private inFlight = 0;
  private limit: number;
  private readonly waiting: (() => void)[] = [];

  constructor(private cap: number) {
    this.limit = cap;
  }

  acquire(retry: boolean): Promise<void> {
    if (this.waiting.length === 0 && this.inFlight < Math.floor(this.limit)) {
      this.inFlight += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => (retry ? this.waiting.unshift(resolve) : this.waiting.push(resolve)));
  }

  release(outcome: "ok" | "failed" | "full", bound?: number): void {
    this.inFlight -= 1;
    if (outcome === "full") {
      if (bound !== undefined) this.cap = Math.min(this.cap, bound);
      this.limit = Math.max(1, Math.min(this.cap, this.inFlight));
    } else if (outcome === "ok") {
      this.limit = Math.min(this.cap, this.limit + 1);
    }
    while (this.waiting.length > 0 && this.inFlight < Math.floor(this.limit)) {
      this.inFlight += 1;
      this.waiting.shift()!();
    }
  }
}

/**
 * Calls `call` for every input and yields the results in input order, each as soon as it and all
 * before it are done. At most `concurrency` inputs are started and not yet yielded; of those, at
 * most what the queue takes are in flight: `bound` (the workload's maxPendingTasks, when known)
 * from the start, and a call refused with 429 QUEUE_FULL lowers the window, waits (Retry-After)
 * and is tried again, as often as it takes: backpressure never fails a map. Any other error does.
 */
export async function* mapOrdered<In, Out>(
  inputs: Iterable<In>, concurrency: number, call: (input: In) => Promise<Out>, options: { bound?: number } = {},
): AsyncGenerator<Out> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`concurrency must be a positive integer, got ${String(concurrency)}`);
  const window = new Window(Math.min(concurrency, options.bound ?? concurrency));
  const run = async (input: In): Promise<Out> => {
    for (let attempt = 0; ; attempt++) {
      await window.acquire(attempt > 0);
      let result: Out;
      try {
        result = await call(input);
      } catch (err) {
        if (!isQueueFull(err)) {
          window.release("failed");
          throw err;
        }
        window.release("full", queueLimit(err));
        await sleep(queueFullDelay(err, Math.min(attempt, 4)));
        continue;
      }
      window.release("ok");
      return result;
    }
  };
  const pending: Promise<Out>[] = [];
  const iterator = inputs[Symbol.iterator]();
  let exhausted = false;
  const fill = () => {
    while (!exhausted && pending.length < concurrency) {
      const next = iterator.next();
      if (next.done) exhausted = true;
      else {
        const promise = run(next.value);
        promise.catch(() => undefined); // observed when its turn comes; no unhandled rejection meanwhile
        pending.push(promise);
      }
    }
  };
  fill();
  while (pending.length > 0) {
    const result = await pending.shift()!;
    fill();
    yield result;
  }
}

export type { Task };
