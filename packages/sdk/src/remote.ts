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
  /** Calls in flight at once (default 10); the autoscaler starts containers to match. */
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

/**
 * Calls `call` for every input with at most `concurrency` in flight, and yields the results in
 * input order, each as soon as it and all before it are done.
 */
export async function* mapOrdered<In, Out>(inputs: Iterable<In>, concurrency: number, call: (input: In) => Promise<Out>): AsyncGenerator<Out> {
  const pending: Promise<Out>[] = [];
  const iterator = inputs[Symbol.iterator]();
  let exhausted = false;
  const fill = () => {
    while (!exhausted && pending.length < concurrency) {
      const next = iterator.next();
      if (next.done) exhausted = true;
      else {
        const promise = call(next.value);
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
