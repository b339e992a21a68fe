/**
 * The programmatic client for the gateway's HTTP API. One undici Pool per client keeps
 * connections alive across calls (a CLI command or an SDK deploy makes several in a row);
 * call close() when done so the process can exit.
 */
import { Pool, type Dispatcher } from "undici";
import { ApiError, items, notDeployed, queryString, toApiError, type ServeSession } from "./client-support.js";
import { TaskHandle } from "./remote.js";
import { uploadImageFiles } from "./image-files.js";
import { Volumes } from "./volumes.js";
import { defaultClientOptions, NO_CLIENT_CONFIGURED } from "./config-file.js";
import {
  API_PREFIX,
  pinnedTlsOptions,
  type CreateDeploymentBody,
  type CreatePoolBody,
  type CreateStubBody,
  type CreateTokenBody,
  type Deployment,
  type DeploymentListQuery,
  type Machine,
  type Pool as WorkerPool,
  type Secret,
  type App,
  type Container,
  type Image as ImageInfo,
  type ImageSpec,
  type LogEntry,
  type LogLine,
  type RunContainerBody,
  type WorkerInfo,
  type Stub,
  type StoredObject,
  type Task,
  type TaskStatus,
  type Token,
  type TokenWithKey,
  type Workspace,
} from "@beta9/protocol";

export interface ClientOptions {
  /** Base URL of the gateway, e.g. http://127.0.0.1:1994 (a path prefix is kept). */
  gateway: string;
  token?: string;
  /**
   * PEM of the certificate to trust for this gateway (instead of the system's CAs): the
   * self-signed one `beta9 up --tls` makes; `beta9 config create --tls-ca` saves it in a context.
   */
  tlsCa?: string;
  /** Longest wait for the gateway's answer to a request, in ms (default 300 s); `longWait` calls have none. */
  answerTimeoutMs?: number;
}

export type Query = Record<string, string | number | boolean | undefined>;

/** As long as the gateway may take to answer a `longWait` call (the Python SDK waits as long). */
const LONG_WAIT_MS = 70 * 60_000;

export interface RequestOptions {
  /** A Buffer/Uint8Array is sent as application/octet-stream, anything else as JSON. */
  body?: unknown;
  query?: Query;
  /**
   * The gateway answers only once something is ready and bounds that wait itself (placement, then
   * a pod's readyTimeout, up to an hour): wait up to 70 minutes for its answer, where the default
   * (undici's 300 s) would fail a slow pod that the gateway would still have answered.
   */
  longWait?: boolean;
}

export interface Health {
  status: "ok";
  version: string;
  schemaVersion: number;
  uptimeSeconds?: number;
}

export interface ListOptions {
  limit?: number;
  offset?: number;
}

/** `listTasks` filters, applied by the gateway: any of these statuses, and one workload (a stub id or a deployment name, not both). */
export interface TaskListOptions extends ListOptions {
  status?: TaskStatus | readonly TaskStatus[];
  stub?: string;
  deployment?: string;
}


interface RawResponse {
  status: number;
  body: Buffer;
}

export class Client {
  readonly gateway: string;
  readonly token: string | undefined;
  readonly tlsCa: string | undefined;
  private readonly pool: Pool;
  private readonly basePath: string;

  /**
   * `new Client()` takes BETA9_GATEWAY / BETA9_TOKEN, else the CLI's current context (what
   * `beta9 up` saves), as workloads' `.remote()` does; or give `{ gateway, token }`.
   */
  constructor(given?: ClientOptions) {
    const options: ClientOptions | undefined = given ?? defaultClientOptions();
    if (!options) throw new Error(NO_CLIENT_CONFIGURED);
    let url: URL;
    try {
      url = new URL(options.gateway);
    } catch {
      throw new TypeError(`gateway must be an absolute http:// or https:// URL, got ${JSON.stringify(options.gateway)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`gateway must be an http:// or https:// URL, got ${JSON.stringify(options.gateway)}`);
    }
    this.gateway = options.gateway.replace(/\/+$/, "");
    this.token = options.token;
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.tlsCa = options.tlsCa;
    this.pool = new Pool(url.origin, gatewayPoolOptions(options.tlsCa, options.answerTimeoutMs === undefined ? {} : { headersTimeout: options.answerTimeoutMs }));
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private volumeApi: Volumes | undefined;
  /** The workspace's volumes: create, list, delete, ls, upload, download, remove (see Volumes). */
  get volumes(): Volumes {
    return (this.volumeApi ??= new Volumes(this));
  }

  /** Drops every connection now, open streams (log follows) included. */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }

  /** Calls `method API_PREFIX+path`; resolves to the parsed JSON body (undefined when empty). */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, options);
    if (res.body.length === 0) return undefined as T;
    try {
      return JSON.parse(res.body.toString("utf8")) as T;
    } catch {
      throw new ApiError(res.status, `HTTP_${res.status}`, `${method} ${path}: the gateway answered with a body that is not JSON`);
    }
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<RawResponse> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: Buffer | string | undefined;
    if (options.body instanceof Uint8Array) {
      body = Buffer.from(options.body.buffer, options.body.byteOffset, options.body.byteLength);
      headers["content-type"] = "application/octet-stream";
    } else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const fullPath = this.basePath + API_PREFIX + path + queryString(options.query);

    let res;
    try {
      res = await this.pool.request({
        method: method as Dispatcher.HttpMethod, path: fullPath, headers, body: body ?? null, ...(options.longWait && { headersTimeout: LONG_WAIT_MS }),
      });
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (reason === "UND_ERR_HEADERS_TIMEOUT") {
        throw new ApiError(0, "UNREACHABLE", `the gateway at ${this.gateway} accepted ${method} ${path} but did not answer in time (${reason})`);
      }
      throw new ApiError(0, "UNREACHABLE", `cannot reach the gateway at ${this.gateway} (${reason}); is it running (beta9 up)?`);
    }
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode >= 200 && res.statusCode < 300) {
      return { status: res.statusCode, body: bytes };
    }
    throw toApiError(res.statusCode, method, path, bytes, res.headers);
  }

  health(): Promise<Health> {
    return this.request("GET", "/health");
  }

  // Workspaces (creating and listing them needs an admin token)
  currentWorkspace(): Promise<Workspace> {
    return this.request("GET", "/workspace/current");
  }
  async listWorkspaces(): Promise<Workspace[]> {
    return items(await this.request("GET", "/workspace"));
  }
  createWorkspace(name: string): Promise<{ workspace: Workspace; token: TokenWithKey }> {
    return this.request("POST", "/workspace", { body: { name } });
  }

  // Tokens of the caller's workspace
  async listTokens(options: ListOptions = {}): Promise<Token[]> {
    return items(await this.request("GET", "/token", { query: { ...options } }));
  }
  createToken(body: CreateTokenBody): Promise<TokenWithKey> {
    return this.request("POST", "/token", { body });
  }
  revokeToken(id: string): Promise<Token> {
    return this.request("DELETE", `/token/${encodeURIComponent(id)}`);
  }

  async listApps(options: ListOptions = {}): Promise<App[]> {
    return items(await this.request("GET", "/app", { query: { ...options } }));
  }
  getApp(id: string): Promise<App> {
    return this.request("GET", `/app/${encodeURIComponent(id)}`);
  }

  // Content-addressed objects (code bundles)
  async headObject(hash: string): Promise<boolean> {
    try {
      await this.send("HEAD", `/object/${encodeURIComponent(hash)}`, {});
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  }
  putObject(hash: string, bytes: Buffer): Promise<StoredObject> {
    return this.request("PUT", `/object/${encodeURIComponent(hash)}`, { body: bytes });
  }
  async getObject(hash: string): Promise<Buffer> {
    return (await this.send("GET", `/object/${encodeURIComponent(hash)}`, {})).body;
  }
  async listObjects(options: ListOptions = {}): Promise<StoredObject[]> {
    return items(await this.request("GET", "/object", { query: { ...options } }));
  }

  createStub(body: CreateStubBody): Promise<{ stub: Stub; created: boolean; warnings?: string[] }> {
    return this.request("POST", "/stub", { body });
  }
  async listStubs(options: ListOptions = {}): Promise<Stub[]> {
    return items(await this.request("GET", "/stub", { query: { ...options } }));
  }
  getStub(id: string): Promise<Stub> {
    return this.request("GET", `/stub/${encodeURIComponent(id)}`);
  }

  createDeployment(body: CreateDeploymentBody): Promise<Deployment> {
    return this.request("POST", "/deployment", { body });
  }
  async listDeployments(query: { name?: string; active?: boolean; limit?: number; offset?: number } = {}): Promise<Deployment[]> {
    const q: DeploymentListQuery = {};
    if (query.name !== undefined) q.name = query.name;
    if (query.active !== undefined) q.active = query.active ? "true" : "false";
    if (query.limit !== undefined) q.limit = String(query.limit);
    if (query.offset !== undefined) q.offset = String(query.offset);
    return items(await this.request("GET", "/deployment", { query: q }));
  }
  getDeployment(id: string): Promise<Deployment> {
    return this.request("GET", `/deployment/${encodeURIComponent(id)}`);
  }
  stopDeployment(id: string): Promise<Deployment> {
    return this.request("POST", `/deployment/${encodeURIComponent(id)}/stop`);
  }
  /** Replaces the deployment's containers: running ones finish their work and stop, new ones start. */
  restartDeployment(id: string): Promise<Deployment> {
    return this.request("POST", `/deployment/${encodeURIComponent(id)}/restart`);
  }
  startDeployment(id: string): Promise<Deployment> {
    return this.request("POST", `/deployment/${encodeURIComponent(id)}/start`);
  }
  async deleteDeployment(id: string): Promise<void> {
    await this.request("DELETE", `/deployment/${encodeURIComponent(id)}`);
  }

  async listTasks(options: TaskListOptions = {}): Promise<Task[]> {
    const { status, ...rest } = options;
    const statuses = status === undefined ? undefined : typeof status === "string" ? status : status.join(",");
    return items(await this.request("GET", "/task", { query: { ...rest, ...(statuses && { status: statuses }) } }));
  }
  getTask(task: string | { id: string }): Promise<Task> {
    const id = typeof task === "string" ? task : task.id;
    return this.request("GET", `/task/${encodeURIComponent(id)}`);
  }
  /** POSTs JSON to an invocation route (outside /api/v1) and parses the JSON answer. */
  private async invoke(path: string, input: unknown): Promise<unknown> {
    const res = await this.pool.request({
      method: "POST", path: this.basePath + path, body: JSON.stringify(input ?? null), headersTimeout: 0, bodyTimeout: 0,
      headers: { "content-type": "application/json", ...(this.token && { authorization: `Bearer ${this.token}` }) },
    }).catch((err: unknown) => {
      throw new ApiError(0, "UNREACHABLE", `cannot reach the gateway at ${this.gateway} (${(err as Error).message})`);
    });
    const type = String(res.headers["content-type"] ?? "");
    if (res.statusCode === 200 && !type.startsWith("application/json")) {
      // A handler that streams (a generator, a ReadableStream, a Response) may never end: not read whole here.
      res.body.destroy();
      throw new ApiError(200, "STREAMED", `POST ${path} answered a stream (${type || "no content type"}), not a JSON result; read it with fetch() as it comes`);
    }
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw toApiError(res.statusCode, "POST", path, bytes, res.headers);
    return JSON.parse(bytes.toString("utf8"));
  }
  /**
   * Puts a task on a deployed task queue (latest version unless `version`), or on any task queue
   * stub by id. Resolves to a handle: `status()`, `result({ wait })`, `cancel()`; it also reads
   * as the task id in strings and JSON.
   */
  async putTask<Out = unknown>(queue: string | { stubId: string }, input: unknown, options: { version?: number } = {}): Promise<TaskHandle<Out>> {
    const put = typeof queue === "string"
      ? notDeployed(this.invoke(`/taskqueue/${encodeURIComponent(queue)}${options.version ? `/v${options.version}` : ""}`, input), "task queue", queue)
      : this.invoke(`/taskqueue/id/${encodeURIComponent(byId(queue, options))}`, input);
    const { task_id } = (await put) as { task_id: string };
    return new TaskHandle<Out>(task_id, (fn) => fn(this));
  }
  /** Calls a deployed endpoint (latest version unless `version`), or any endpoint stub by id, and returns its result. */
  callEndpoint(target: string | { stubId: string }, input: unknown, options: { version?: number } = {}): Promise<unknown> {
    if (typeof target !== "string") return this.invoke(`/endpoint/id/${encodeURIComponent(byId(target, options))}`, input);
    return notDeployed(this.invoke(`/endpoint/${encodeURIComponent(target)}${options.version ? `/v${options.version}` : ""}`, input), "endpoint", target);
  }
  /** Runs a function stub (deployed by name, or any function stub by id) and returns its result. */
  callFunction(target: { name: string; version?: number } | { stubId: string }, input: unknown): Promise<unknown> {
    const path = "stubId" in target ? `/function/id/${encodeURIComponent(target.stubId)}`
      : `/function/${encodeURIComponent(target.name)}${target.version ? `/v${target.version}` : ""}`;
    return "stubId" in target ? this.invoke(path, input) : notDeployed(this.invoke(path, input), "function", target.name);
  }
  /** Calls what a serve session serves now (`beta9 serve`, `workload.serve()`). */
  callServe(sessionId: string, input: unknown): Promise<unknown> {
    return this.invoke(`/serve/${encodeURIComponent(sessionId)}`, input);
  }

  // Serve sessions (beta9 serve)
  createServeSession(stubId: string): Promise<ServeSession> {
    return this.request("POST", "/serve", { body: { stubId } });
  }
  getServeSession(id: string): Promise<ServeSession> {
    return this.request("GET", `/serve/${encodeURIComponent(id)}`);
  }
  heartbeatServeSession(id: string): Promise<ServeSession> {
    return this.request("POST", `/serve/${encodeURIComponent(id)}/heartbeat`);
  }
  /** Hot reload: resolves once the new stub's container serves the session. */
  replaceServeStub(id: string, stubId: string): Promise<ServeSession> {
    return this.request("PUT", `/serve/${encodeURIComponent(id)}/stub`, { body: { stubId } });
  }
  async endServeSession(id: string): Promise<void> {
    await this.request("DELETE", `/serve/${encodeURIComponent(id)}`);
  }

  /** Waits for a task to end (COMPLETE, ERROR, TIMEOUT, CANCELLED or EXPIRED) and returns it. */
  async waitForTask(task: string | { id: string }): Promise<Task> {
    const id = typeof task === "string" ? task : task.id;
    for await (const event of this.events(`/task/${encodeURIComponent(id)}/subscribe`)) {
      if (event.name === "end") return event.data as Task;
    }
    return this.getTask(id);
  }
  cancelTask(task: string | { id: string }): Promise<Task> {
    const id = typeof task === "string" ? task : task.id;
    return this.request("POST", `/task/${encodeURIComponent(id)}/cancel`);
  }

  // Secrets: write-only; no call returns a value.
  createSecret(name: string, value: string): Promise<Secret> {
    return this.request("POST", "/secret", { body: { name, value } });
  }
  updateSecret(name: string, value: string): Promise<Secret> {
    return this.request("PUT", `/secret/${encodeURIComponent(name)}`, { body: { value } });
  }
  async deleteSecret(name: string): Promise<void> {
    await this.request("DELETE", `/secret/${encodeURIComponent(name)}`);
  }
  async listSecrets(): Promise<Secret[]> {
    return items(await this.request("GET", "/secret"));
  }

  async listPools(): Promise<WorkerPool[]> {
    return items(await this.request("GET", "/pool"));
  }
  createPool(body: CreatePoolBody): Promise<WorkerPool> {
    return this.request("POST", "/pool", { body });
  }
  async listMachines(pool?: string): Promise<Machine[]> {
    return items(await this.request("GET", "/machine", { query: { pool } }));
  }

  // Containers and workers
  runContainer(body: RunContainerBody): Promise<Container> {
    return this.request("POST", "/container", { body });
  }
  async listContainers(query: { active?: boolean } = {}): Promise<Container[]> {
    return items(await this.request("GET", "/container", { query: { active: query.active } }));
  }
  getContainer(id: string): Promise<Container> {
    return this.request("GET", `/container/${encodeURIComponent(id)}`);
  }
  stopContainer(id: string): Promise<Container> {
    return this.request("POST", `/container/${encodeURIComponent(id)}/stop`);
  }
  async containerLogs(id: string): Promise<LogLine[]> {
    return items(await this.request("GET", `/container/${encodeURIComponent(id)}/logs`));
  }
  /**
   * Follows a container's logs: yields the history, then each new line and state change, and
   * ends after the container has exited (the last event is `end` with its final state).
   */
  async *followContainer(id: string): AsyncGenerator<ContainerEvent> {
    for await (const event of this.events(`/container/${encodeURIComponent(id)}/logs?follow=true`)) {
      if (event.name === "log") yield { kind: "log", line: event.data as LogLine };
      else if (event.name === "state") yield { kind: "state", container: event.data as Container };
      else if (event.name === "end") {
        yield { kind: "end", container: event.data as Container };
        return;
      }
    }
  }

  /**
   * Stored log lines of exactly one container, sandbox, deployment, stub or task (after a gateway
   * restart too): the last `limit` (default 1000), or the first `limit` after the seq `after`.
   */
  async logs(filter: LogsFilter): Promise<LogEntry[]> {
    return items(await this.request("GET", "/logs", { query: { ...filter } }));
  }
  /** Follows logs: the history, then each new line; `end` comes when the container exits or the task ends (never for a deployment). */
  async *followLogs(filter: LogsFilter): AsyncGenerator<LogsEvent> {
    for await (const event of this.events(`/logs${queryString({ ...filter, follow: true })}`)) {
      if (event.name === "log") yield { kind: "log", entry: event.data as LogEntry };
      else if (event.name === "end") {
        yield { kind: "end", reason: (event.data as { reason: string }).reason };
        return;
      }
    }
  }

  /** A text/event-stream response as parsed events (comments, used as keepalives, are skipped). */
  private async *events(pathAndQuery: string): AsyncGenerator<{ name: string; data: unknown }> {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const path = `${this.basePath}${API_PREFIX}${pathAndQuery}`;
    let res;
    try {
      res = await this.pool.request({ method: "GET", path, headers, bodyTimeout: 0 });
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ApiError(0, "UNREACHABLE", `cannot reach the gateway at ${this.gateway} (${reason}); is it running (beta9 up)?`);
    }
    if (res.statusCode !== 200) throw toApiError(res.statusCode, "GET", path, Buffer.from(await res.body.arrayBuffer()));
    let buffer = "";
    for await (const chunk of res.body) {
      buffer += String(chunk);
      let boundary: number;
      while ((boundary = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (name && data !== undefined) yield { name, data: JSON.parse(data) };
      }
    }
  }

  // Images
  /**
   * Starts (or joins, or skips when ready) the build of `spec`; follow it with followImageBuild.
   * Local files the spec copies (Image.addLocalFile, fromDockerfile) are uploaded first when new.
   */
  async buildImage(spec: ImageSpec): Promise<ImageInfo> {
    await uploadImageFiles(this, spec);
    return this.request("POST", "/image/build", { body: { spec } });
  }
  async listImages(options: ListOptions = {}): Promise<ImageInfo[]> {
    return items(await this.request("GET", "/image", { query: { ...options } }));
  }
  getImage(id: string): Promise<ImageInfo> {
    return this.request("GET", `/image/${encodeURIComponent(id)}`);
  }
  /** The workspace stops using the image (its quota counts it no more); refused while a live deployment uses it. */
  async deleteImage(id: string): Promise<void> {
    await this.request("DELETE", `/image/${encodeURIComponent(id)}`);
  }
  /** Yields the build's log lines, then `end` with the image (ready or failed). */
  async *followImageBuild(id: string): AsyncGenerator<{ kind: "log"; line: LogLine } | { kind: "end"; image: ImageInfo }> {
    for await (const event of this.events(`/image/${encodeURIComponent(id)}/logs?follow=true`)) {
      if (event.name === "log") yield { kind: "log", line: event.data as LogLine };
      else if (event.name === "end") {
        yield { kind: "end", image: event.data as ImageInfo };
        return;
      }
    }
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    return items(await this.request("GET", "/worker"));
  }
}

/** A stub named by id has no versions: a version given with it is a mistake, not something to drop. */
function byId(target: { stubId: string }, options: { version?: number }): string {
  if (options.version !== undefined) throw new TypeError("version names a deployment's version; a stub called by id has none");
  return target.stubId;
}

/** Whose stored log lines to read (exactly one of the ids), from when (`since`: 10m, 2h, 7d or an ISO time), how many. */
export interface LogsFilter {
  containerId?: string;
  sandboxId?: string;
  deploymentId?: string;
  stubId?: string;
  taskId?: string;
  since?: string;
  after?: number;
  limit?: number;
}

export type LogsEvent = { kind: "log"; entry: LogEntry } | { kind: "end"; reason: string };

export type ContainerEvent =
  | { kind: "log"; line: LogLine }
  | { kind: "state"; container: Container }
  | { kind: "end"; container: Container };





export { ApiError, type ServeSession };

/** undici options for a connection to the gateway: its own certificate trusted when given. */
export function gatewayPoolOptions(tlsCa: string | undefined, extra: Pool.Options = {}): Pool.Options {
  return tlsCa ? { ...extra, connect: pinnedTlsOptions(tlsCa) } : extra;
}
