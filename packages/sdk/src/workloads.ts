/**
 * Workload wrappers: `endpoint`, `taskQueue`, `fn` and `schedule` turn a plain (async) function
 * into a workload the CLI deploys and the runner serves. Each returns a frozen descriptor
 * (runner-protocol.ts `WorkloadDescriptor`) whose `config` is the gateway's `StubConfigInput`
 * (units as written: the gateway normalizes and validates them) plus the `image` to build.
 *
 * @example
 * import { endpoint, Image, QueueDepthAutoscaler, schema } from "beta9";
 * export const predict = endpoint(
 *   { name: "predict", gpu: "A10G", cpu: 2, memory: "16Gi", image: new Image().pipInstall(["torch"]),
 *     autoscaler: new QueueDepthAutoscaler({ maxContainers: 5, tasksPerContainer: 30 }),
 *     inputs: schema.object({ text: schema.string() }) },
 *   async (input) => ({ label: "cat", length: input.text.length }),
 * );
 */
import { NameSchema, normalizeStubConfig, WORKLOAD_MARKER, type InvocationContext, type StubConfigInput, type WorkloadDescriptor, type WorkloadKind } from "@beta9/protocol";
import type { Client } from "./client.js";
import { Image } from "./image.js";
import { Volume } from "./sandbox-volume.js";
import { mapOrdered, openClient, retryWhileQueueFull, TaskHandle, withClient, type CallOptions, type MapOptions } from "./remote.js";
import type { DeployResult } from "./workloads-deploy.js";
import type { ServeHandle, ServeOptions } from "./workloads-serve.js";
import type { AnySchema, Infer, Schema } from "./schema.js";

export type TaskPolicyInput = NonNullable<StubConfigInput["taskPolicy"]>;
export type AutoscalerInput = NonNullable<StubConfigInput["autoscaler"]>;
export type TaskPolicyOptions = TaskPolicyInput;
export type QueueDepthAutoscalerOptions = Omit<AutoscalerInput, "type">;

/** Throws a TypeError naming the first key of `value` not in `allowed` (JS callers get no type check). */
function checkKeys(where: string, value: object, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const hint = camel !== key && allowed.includes(camel) ? `; did you mean ${camel}?` : `; known options: ${allowed.join(", ")}`;
    throw new TypeError(`${where}: unknown option "${key}"${hint}`);
  }
}

function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Retries, timeout and time-to-live of a workload's tasks (seconds; `timeout: -1` disables it,
 * except for endpoints). Unset fields take the workload kind's defaults at the gateway.
 *
 * @example
 * taskQueue({ name: "resize", taskPolicy: new TaskPolicy({ maxRetries: 3, timeout: 600 }) }, resize);
 */
export class TaskPolicy {
  readonly maxRetries?: number;
  readonly timeout?: number;
  readonly ttl?: number;

  constructor(options: TaskPolicyOptions = {}) {
    checkKeys("new TaskPolicy()", options, ["maxRetries", "timeout", "ttl"]);
    Object.assign(this, definedOnly({ maxRetries: options.maxRetries, timeout: options.timeout, ttl: options.ttl }));
    Object.freeze(this);
  }

  /** The gateway's `taskPolicy` config input. */
  toConfig(): TaskPolicyInput {
    return definedOnly({ maxRetries: this.maxRetries, timeout: this.timeout, ttl: this.ttl });
  }
}

/**
 * Scales containers with the number of queued and running tasks: `ceil(tasks / tasksPerContainer)`
 * containers, between `minContainers` (default 0: scale to zero) and `maxContainers` (default 1).
 *
 * @example
 * endpoint({ name: "chat", autoscaler: new QueueDepthAutoscaler({ maxContainers: 5, tasksPerContainer: 30 }) }, chat);
 */
export class QueueDepthAutoscaler {
  readonly type = "queue_depth" as const;
  readonly maxContainers?: number;
  readonly tasksPerContainer?: number;
  readonly minContainers?: number;

  constructor(options: QueueDepthAutoscalerOptions = {}) {
    checkKeys("new QueueDepthAutoscaler()", options, ["maxContainers", "tasksPerContainer", "minContainers"]);
    const { maxContainers, tasksPerContainer, minContainers } = options;
    Object.assign(this, definedOnly({ maxContainers, tasksPerContainer, minContainers }));
    Object.freeze(this);
  }

  /** The gateway's `autoscaler` config input. */
  toConfig(): AutoscalerInput {
    const { maxContainers, tasksPerContainer, minContainers } = this;
    return { type: "queue_depth", ...definedOnly({ maxContainers, tasksPerContainer, minContainers }) };
  }
}

/** What a handler gets besides its input; `onStartValue` is what `onStart` returned. */
export interface Context<S = unknown> extends InvocationContext {
  onStartValue: S;
}

export type Handler<In, Out, S> = (input: In, ctx: Context<S>) => Out | Promise<Out>;

/** Options every workload kind takes (beta9's decorator arguments, camelCased). */
export interface BaseOptions {
  /** Stub name: lowercase letters, digits, '.', '_' or '-', 1–63 characters. */
  name: string;
  image?: Image;
  /** Cores (`2`, `0.5`) or millicores (`"500m"`). */
  cpu?: number | string;
  /** MiB (`1024`) or a size (`"16Gi"`, `"512Mi"`, `"1GB"`). */
  memory?: number | string;
  /** A GPU type (`"A10G"`, `"any"`) or a list in order of preference. */
  gpu?: string | string[];
  gpuCount?: number;
  workers?: number;
  concurrentRequests?: number;
  keepWarmSeconds?: number;
  maxPendingTasks?: number;
  taskPolicy?: TaskPolicy | TaskPolicyOptions;
  callbackUrl?: string;
  /** Names of workspace secrets, set as environment variables. */
  secrets?: string[];
  env?: Record<string, string>;
  authorized?: boolean;
  autoscaler?: QueueDepthAutoscaler | QueueDepthAutoscalerOptions;
  /** Pin to a worker pool. */
  pool?: string;
  /** Named volumes of the workspace, mounted read-write in every container (changes are committed when a container ends). */
  volumes?: Volume[];
  /** No network at all for its containers (mutually exclusive with allowList). */
  blockNetwork?: boolean;
  /**
   * Egress only to these IPv4 destinations, plus DNS: "CIDR", "CIDR:PORT" or "CIDR:LOW-HIGH".
   * Private and host addresses also need the worker's operator to allow them (`--egress-allow`).
   */
  allowList?: string[];
}

export interface WorkloadOptions<S = unknown, I extends AnySchema | undefined = AnySchema | undefined> extends BaseOptions {
  /** Runs once per container before any input; its value is `ctx.onStartValue`. */
  onStart?: () => S | Promise<S>;
  /** Checks every input before the handler runs (422 INPUT_INVALID otherwise) and types it. */
  inputs?: I;
}

/** A workload as `endpoint()`, `taskQueue()`, `fn()` and `schedule()` return it. */
export interface Workload<In = unknown, Out = unknown, S = unknown> extends WorkloadDescriptor {
  readonly config: StubConfigInput;
  /** The image the CLI builds; its id becomes `config.imageId` at deploy time. */
  readonly image: Image;
  readonly inputs?: Schema<In>;
  /** Phantom: the handler's input, output and onStart types, for typed callers. Never set. */
  readonly __types?: { input: In; output: Out; onStartValue: S };
  /**
   * Calls the endpoint or function and returns its result: its deployment when it has one, else
   * this code on a temporary stub (see `put`). A 429 QUEUE_FULL is retried a few times (Retry-After).
   */
  remote(input: In, options?: CallOptions): Promise<Out>;
  /**
   * Calls the function once per input; yields results in input order as they finish. Keeps no
   * more in flight than its queue takes (maxPendingTasks): backpressure slows a map, never fails it.
   */
  map(inputs: Iterable<In>, options?: MapOptions): AsyncGenerator<Out>;
  /**
   * Puts a task on the task queue: a handle with `status()`, `result({ wait })` and `cancel()`
   * (it reads as the task id in strings). A workload with no active deployment runs undeployed:
   * the file that defines it is bundled and uploaded, once per process, and its tasks go to a
   * stub of that code outside any deployment (as `serve()` makes). Where that file cannot be
   * bundled (inside a container), or `version` names a deployed version, it is a
   * WORKLOAD_NOT_DEPLOYED error that says to deploy it first.
   */
  put(input: In, options?: CallOptions): Promise<TaskHandle<Out>>;
  /**
   * Deploys a new version from code, exactly as `beta9 deploy FILE:EXPORT` does: the file that
   * defines this workload is bundled (the workload must be exported from it). Inside a container
   * it does nothing and resolves to version 0.
   */
  deploy(options?: DeployOptions): Promise<{ name: string; version: number; url: string }>;
  /** `beta9 serve` from code: one ephemeral container, hot reload on save; stop() ends it. */
  serve(options?: ServeOptions & { client?: CallOptions["client"] }): Promise<ServeHandle>;
}

export interface DeployOptions extends Pick<CallOptions, "client"> {
  /** Deployment name (default: the workload's name). */
  name?: string;
  /** Image build log lines (default: dropped). */
  onBuildLog?: (line: string) => void;
}

/** A wrapper's call signatures: input typed from `inputs` when given, else from the handler. */
export interface WorkloadFactory<Extra = object> {
  <I extends AnySchema, Out = unknown, S = undefined>(
    options: Extra & BaseOptions & { inputs: I; onStart?: () => S | Promise<S> },
    handler: Handler<Infer<I>, Out, S>,
  ): Workload<Infer<I>, Out, S>;
  <In = unknown, Out = unknown, S = undefined>(
    options: Extra & BaseOptions & { inputs?: undefined; onStart?: () => S | Promise<S> },
    handler: Handler<In, Out, S>,
  ): Workload<In, Out, S>;
}

const CONFIG_KEYS = [
  "cpu", "memory", "gpu", "gpuCount", "workers", "concurrentRequests", "keepWarmSeconds", "maxPendingTasks",
  "callbackUrl", "secrets", "env", "authorized", "pool", "when", "blockNetwork", "allowList",
] as const;
const OPTION_KEYS = [...CONFIG_KEYS, "name", "image", "taskPolicy", "autoscaler", "onStart", "inputs", "volumes"];
const NAME = new RegExp(NameSchema.pattern ?? "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$");
const WRAPPER: Record<WorkloadKind, string> = { endpoint: "endpoint", taskqueue: "taskQueue", function: "fn", schedule: "schedule" };

/** Throws a TypeError explaining the naming rule, with a corrected suggestion when one exists. */
function checkName(where: string, name: unknown): asserts name is string {
  const rule = `lowercase letters, digits, '.', '_' or '-', 1–63 characters, starting and ending with a letter or digit`;
  if (typeof name !== "string" || name === "") throw new TypeError(`${where}: name is required (${rule}), e.g. { name: "image-processor" }`);
  if (NAME.test(name)) return;
  const fixed = name.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "").slice(0, 63);
  const hint = fixed && NAME.test(fixed) ? `; did you mean "${fixed}"?` : "";
  throw new TypeError(`${where}: name ${JSON.stringify(name)} is not valid: use ${rule}${hint}`);
}

function copyJson<T>(value: T): T {
  return Array.isArray(value) ? (Object.freeze([...value]) as T) : typeof value === "object" && value !== null ? (Object.freeze({ ...value }) as T) : value;
}

/** Options → the gateway's StubConfigInput: only the fields given, no functions, no image. */
function toConfig(options: WorkloadOptions & { when?: string }): StubConfigInput {
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) if (options[key] !== undefined) config[key] = copyJson(options[key]);
  if (options.taskPolicy !== undefined) {
    const p = options.taskPolicy;
    config.taskPolicy = Object.freeze((p instanceof TaskPolicy ? p : new TaskPolicy(p)).toConfig());
  }
  if (options.volumes !== undefined) {
    if (!Array.isArray(options.volumes) || !options.volumes.every((v) => v instanceof Volume)) throw new TypeError("volumes must be Volume objects: new Volume({ name, mountPath })");
    config.volumes = Object.freeze(options.volumes.map((v) => Object.freeze({ name: v.name, mountPath: v.mountPath })));
  }
  if (options.autoscaler !== undefined) {
    const a = options.autoscaler;
    config.autoscaler = Object.freeze((a instanceof QueueDepthAutoscaler ? a : new QueueDepthAutoscaler(a)).toConfig());
  }
  return Object.freeze(config) as StubConfigInput;
}

/**
 * A workload of `kind` (what every wrapper returns). `extra`: config fields a wrapper sets itself,
 * not options a user writes (webApp() sets `webApp: true`).
 */
export function define(kind: WorkloadKind, options: WorkloadOptions & { when?: string }, handler: Handler<unknown, unknown, unknown>, extra: Partial<StubConfigInput> = {}): Workload {
  const where = `${WRAPPER[kind]}()`;
  if (typeof options !== "object" || options === null) throw new TypeError(`${where}: the first argument must be an options object with a name`);
  checkName(where, options.name);
  const named = `${WRAPPER[kind]}("${options.name}")`;
  checkKeys(named, options, kind === "schedule" ? OPTION_KEYS : OPTION_KEYS.filter((k) => k !== "when"));
  if (kind === "schedule" && typeof options.when !== "string") throw new TypeError(`${named}: when is required: a cron expression such as "*/5 * * * *" or "@hourly" (UTC)`);
  if (typeof handler !== "function") throw new TypeError(`${named}: the second argument must be the handler function`);
  if (options.image !== undefined && !(options.image instanceof Image)) throw new TypeError(`${named}: image must be an Image from "beta9"`);
  if (options.onStart !== undefined && typeof options.onStart !== "function") throw new TypeError(`${named}: onStart must be a function`);
  const inputs = options.inputs;
  if (inputs !== undefined && typeof inputs?.validate !== "function") throw new TypeError(`${named}: inputs must be a schema, e.g. schema.object({ … })`);
  const definedIn = callerFile();
  // The gateway checks the input against the same schema, so a bad one is a 422 before anything runs.
  const own = inputs !== undefined && kind !== "schedule" && typeof inputs.toJSONSchema === "function"
    ? (Object.freeze({ ...toConfig(options), inputs: inputs.toJSONSchema() }) as StubConfigInput)
    : toConfig(options);
  const config = Object.keys(extra).length > 0 ? (Object.freeze({ ...own, ...extra }) as StubConfigInput) : own;
  const undeployed = new UndeployedStubs(() => self, definedIn);
  const self: Workload = Object.freeze({
    [WORKLOAD_MARKER]: true as const,
    kind,
    name: options.name,
    config,
    image: options.image ?? new Image(),
    handler: handler as WorkloadDescriptor["handler"],
    ...(options.onStart && { onStart: options.onStart }),
    ...(inputs && { inputs, validateInput: (value: unknown) => inputs.validate(value) }),
    ...callers(kind, options.name, queueBound(kind, config), undeployed),
    deploy: (o: DeployOptions = {}) => fromCode(self, definedIn, "deploy", o.client, async (client) => {
      const { deployWorkload } = await import("./workloads-deploy.js");
      const r: DeployResult = await deployWorkload(client, self, { file: definedIn! }, {
        ...(o.name !== undefined && { name: o.name }), ...(o.onBuildLog && { onLog: o.onBuildLog }),
      });
      undeployed.forget(); // calls go to the deployment from now on
      return { name: r.name, version: r.version, url: r.url };
    }, { name: options.name, version: 0, url: "" }),
    serve: (o: ServeOptions & Pick<CallOptions, "client"> = {}) => fromCode(self, definedIn, "serve", o.client, async (client) => {
      const { serveWorkload } = await import("./workloads-serve.js");
      return serveWorkload(client, self, { file: definedIn! }, o);
    }, undefined, true),
  });
  return self;
}

/** Other SDK modules that call define() for their users (webapp.ts): never the caller. */
const WRAPPER_MODULES = new Set<string>();
export function wrapperModule(url: string): void {
  WRAPPER_MODULES.add(new URL(url).pathname);
}

/**
 * The file that called the wrapper (from the stack: the first frame outside this module), so
 * `.deploy()` knows what to bundle. Undefined where it cannot tell (inside a bundle).
 */
function callerFile(): string | undefined {
  // Paths, not URLs: loaders (tsx) add queries such as ?tsx-namespace=… to module URLs.
  const own = new URL(import.meta.url).pathname;
  for (const line of (new Error().stack ?? "").split("\n").slice(1)) {
    const match = /\(?((?:file:\/\/)?\/[^():]+):\d+:\d+\)?\s*$/.exec(line);
    const where = match?.[1];
    if (!where || where.startsWith("node:")) continue;
    const path = new URL(where.startsWith("file://") ? where : `file://${where}`).pathname;
    if (path === own || WRAPPER_MODULES.has(path)) continue;
    return decodeURIComponent(path);
  }
  return undefined;
}

/** Whether `definedIn` is a file this process can bundle (not code already bundled into a container). */
function bundleable(definedIn: string | undefined): definedIn is string {
  return !!definedIn && !definedIn.startsWith("/$bunfs") && !definedIn.includes("beta9-bundle-");
}

/**
 * Runs a from-code operation with a client: the given one, or a default one (openClient) that
 * stays open as long as the result needs it (serve), else is closed after.
 */
async function fromCode<T>(
  workload: Workload, definedIn: string | undefined, what: string, client: CallOptions["client"], run: (client: NonNullable<CallOptions["client"]>) => Promise<T>,
  inContainer?: T, keepOpen = false,
): Promise<T> {
  // Inside a container (the runner sets BETA9_HANDLER) the module is loaded to serve, not to ship.
  if (process.env.BETA9_HANDLER && inContainer !== undefined) return inContainer;
  if (!bundleable(definedIn)) {
    throw new TypeError(`${WRAPPER[workload.kind]}("${workload.name}").${what}(): cannot tell which file defines it; use beta9 ${what} FILE:EXPORT`);
  }
  if (client || !keepOpen) return withClient({ ...(client && { client }) }, run);
  const own = await openClient({});
  const result = await run(own.client).catch(async (err: unknown) => {
    await own.close();
    throw err;
  });
  void (result as { done?: Promise<void> }).done?.finally(() => own.close());
  return result;
}

/** The queue's bound as this code declares it (maxPendingTasks, or the gateway's default for the kind). */
function queueBound(kind: WorkloadKind, config: StubConfigInput): number | undefined {
  try {
    return normalizeStubConfig(kind, config).maxPendingTasks;
  } catch {
    return undefined; // a config the gateway refuses: the first call says why
  }
}

/**
 * Running a workload that has no deployment (beta9's `my_task.put()` under `__main__`): the file
 * that defines it is bundled and uploaded and its image built, as `serve()` does, into a stub of
 * variant `serve`, which no deployment lists; calls go to that stub by id. Prepared once per
 * process and gateway (token included: stubs belong to a workspace); `deploy()` forgets it.
 */
class UndeployedStubs {
  private readonly stubs = new Map<string, Promise<string>>();

  constructor(
    private readonly workload: () => Workload,
    private readonly definedIn: string | undefined,
  ) {}

  /**
   * `byName` (the deployment), or where the workload is not deployed, `byStub` on this code's own
   * stub. A process that found no deployment keeps using its stub, so every call of a map runs
   * the same code. A named version never falls back.
   */
  async call<T>(client: Client, version: number | undefined, byName: () => Promise<T>, byStub: (stubId: string) => Promise<T>): Promise<T> {
    const key = `${client.gateway}\n${client.token ?? ""}`;
    const known = version === undefined ? this.stubs.get(key) : undefined;
    if (known) return byStub(await known);
    try {
      return await byName();
    } catch (err) {
      const notDeployed = (err as { code?: unknown }).code === "WORKLOAD_NOT_DEPLOYED";
      if (!notDeployed || version !== undefined || process.env.BETA9_HANDLER || !bundleable(this.definedIn)) throw err;
      return byStub(await this.prepare(key, client, this.definedIn));
    }
  }

  forget(): void {
    this.stubs.clear();
  }

  private prepare(key: string, client: Client, file: string): Promise<string> {
    let stub = this.stubs.get(key);
    if (stub) return stub;
    stub = (async () => {
      const { prepareWorkloadStub } = await import("./workloads-deploy.js");
      return (await prepareWorkloadStub(client, this.workload(), { file }, "serve")).stub.id;
    })();
    this.stubs.set(key, stub);
    // A failed prepare (a build error, the gateway gone) is tried again by the next call.
    stub.catch(() => {
      if (this.stubs.get(key) === stub) this.stubs.delete(key);
    });
    return stub;
  }
}

/** remote/map/put for a workload of this kind and name (each refuses kinds it does not fit). */
function callers(kind: WorkloadKind, name: string, bound: number | undefined, undeployed: UndeployedStubs) {
  const refuse = (what: string, hint: string) => new TypeError(`${WRAPPER[kind]}("${name}").${what}(): ${hint}`);
  const versionOf = (what: string, options: CallOptions) => {
    const { version } = options;
    if (version !== undefined && (!Number.isInteger(version) || version < 1)) throw refuse(what, `version must be a deployed version (1, 2, …), got ${String(version)}`);
    return version;
  };
  const call = (client: Client, input: unknown, version: number | undefined) => {
    const v = version !== undefined ? { version } : {};
    if (kind === "endpoint") return undeployed.call(client, version, () => client.callEndpoint(name, input, v), (stubId) => client.callEndpoint({ stubId }, input));
    return undeployed.call(client, version, () => client.callFunction({ name, ...v }, input), (stubId) => client.callFunction({ stubId }, input));
  };
  return {
    remote: async (input: unknown, options: CallOptions = {}) => {
      if (kind !== "endpoint" && kind !== "function") throw refuse("remote", "only endpoints and functions answer calls; use .put() for a task queue");
      const version = versionOf("remote", options);
      return withClient(options, (client) => retryWhileQueueFull(() => call(client, input, version)));
    },
    map: (inputs: Iterable<unknown>, options: MapOptions = {}) => {
      if (kind !== "function") throw refuse("map", "map is for functions made with fn()");
      const concurrency = options.concurrency ?? 10;
      if (!Number.isInteger(concurrency) || concurrency < 1) throw refuse("map", `concurrency must be a positive integer, got ${String(concurrency)}`);
      const version = versionOf("map", options);
      return (async function* () {
        // One client for the whole map (a default one is closed when the map ends or is left).
        const { client, close } = await openClient(options);
        try {
          yield* mapOrdered(inputs, concurrency, (input) => call(client, input, version), { ...(bound !== undefined && { bound }) });
        } finally {
          await close();
        }
      })();
    },
    put: async (input: unknown, options: CallOptions = {}) => {
      if (kind !== "taskqueue") throw refuse("put", "put is for task queues made with taskQueue()");
      const version = versionOf("put", options);
      const v = version !== undefined ? { version } : {};
      const put = await withClient(options, (client) => retryWhileQueueFull(() =>
        undeployed.call(client, version, () => client.putTask(name, input, v), (stubId) => client.putTask({ stubId }, input))));
      // The handle opens a client per call when the one that put it was a default one.
      return options.client ? put : new TaskHandle(put.id, (fn) => withClient(options, fn));
    },
  };
}

const factory = <Extra = object>(kind: WorkloadKind): WorkloadFactory<Extra> =>
  ((options: WorkloadOptions, handler: Handler<unknown, unknown, unknown>) => define(kind, options, handler)) as WorkloadFactory<Extra>;

/**
 * A synchronous HTTP workload: `POST /endpoint/<name>` with a JSON body runs the handler and
 * answers its result. Defaults: 1 CPU, 128 MiB, keep warm 180 s, timeout 180 s, no retries.
 *
 * @example
 * export const double = endpoint({ name: "double", inputs: schema.object({ n: schema.number() }) }, async (input) => input.n * 2);
 */
export const endpoint: WorkloadFactory = factory("endpoint");

/**
 * A queue of background tasks: `POST /taskqueue/<name>` answers a task id at once; the handler
 * runs later, with retries. Defaults: 1 CPU, keep warm 10 s, timeout 3600 s, 3 retries.
 *
 * @example
 * export const resize = taskQueue({ name: "image-processor", cpu: 1, memory: 1024, taskPolicy: new TaskPolicy({ maxRetries: 3 }) },
 *   async (input: { imageUrl: string }) => ({ imageUrl: input.imageUrl }));
 */
export const taskQueue: WorkloadFactory = factory("taskqueue");

/**
 * A remote function: `POST /function/<name>` runs the handler in its own container and waits for
 * the result. Defaults: 0.125 CPU, timeout 3600 s, 3 retries.
 *
 * @example
 * export const embed = fn({ name: "embed", gpu: "T4" }, async (input: { texts: string[] }) => input.texts.map((t) => t.length));
 */
export const fn: WorkloadFactory = factory("function");

/**
 * A function the gateway runs on a cron schedule (`when`, UTC, or `@hourly`, `@daily`, …).
 *
 * @example
 * export const nightly = schedule({ name: "nightly-report", when: "0 3 * * *" }, async () => ({ ok: true }));
 */
export const schedule: WorkloadFactory<{ when: string }> = factory<{ when: string }>("schedule");
