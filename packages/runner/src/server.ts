/**
 * The runner's HTTP surface (runner-protocol.ts): GET /health, POST /invoke, POST /invoke-batch,
 * POST /cancel/:taskId, and a web app's requests under /web/.
 * Answers nothing per request on stdout: the container's log belongs to the user's code.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { MAX_BODY_BYTES, TASK_ID_HEADER, TASK_RETRIES_HEADER, WEB_PATH_PREFIX } from "./constants.js";
import { BodyTooLargeError, readBody, sendError, sendJson } from "./http.js";
import type { Invoker, Reply } from "./invoker.js";
import { sendStream, type Streamable } from "./stream.js";
import { webRequest } from "./web.js";
import type { Duplex } from "node:stream";
import { handleUpgrade } from "./realtime.js";
import { DEFAULT_TASK_ATTEMPTS, TaskAttempts, type TaskAttemptsOptions } from "./task-attempts.js";

export type Phase = "starting" | "ready" | "stopping";

/** Mutable state main.ts drives; the server only reads it. */
export interface RunnerState {
  phase: Phase;
  /** Absent while loading, and for ever in health-only mode (no BETA9_HANDLER). */
  invoker: Invoker | undefined;
  containerId: string;
  startedAt: number;
  concurrency: number;
  /** The gateway's per-container secret (BETA9_RUNNER_SECRET); when set, every route but /health needs it. */
  secret?: string;
  /** How task attempts outlive their caller (task-attempts.ts); the defaults when absent. */
  taskAttempts?: TaskAttemptsOptions;
}

const attemptsByInvoker = new WeakMap<Invoker, TaskAttempts>();

/** The task attempts of the loaded workload (one table per invoker). */
function attemptsOf(state: RunnerState, invoker: Invoker): TaskAttempts {
  let attempts = attemptsByInvoker.get(invoker);
  if (!attempts) attemptsByInvoker.set(invoker, (attempts = new TaskAttempts(invoker, state.taskAttempts ?? DEFAULT_TASK_ATTEMPTS)));
  return attempts;
}

/** Aborts when the request's answer is dropped before it was all sent: its caller went away. */
function callerSignal(res: ServerResponse): AbortSignal {
  const caller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) caller.abort();
  });
  return caller.signal;
}

const busy = (state: RunnerState): Reply =>
  ({ status: 503, json: JSON.stringify({ error: { code: "BUSY", message: `all ${state.concurrency} invocation slot(s) of this container are taken` } }) });

/** Whether the request shows `Bearer <secret>` (constant time); always true without a secret. */
export function authorized(state: RunnerState, req: IncomingMessage): boolean {
  if (!state.secret) return true;
  const given = Buffer.from(req.headers.authorization ?? "");
  const wanted = Buffer.from(`Bearer ${state.secret}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

function health(state: RunnerState, res: ServerResponse): void {
  if (state.phase !== "ready") {
    sendJson(res, 503, { status: state.phase });
    return;
  }
  sendJson(res, 200, { status: "ok", containerId: state.containerId || null, uptimeMs: Date.now() - state.startedAt });
}

/** `{ input }` from a body, or an error message for a 400. */
function parseInvokeBody(raw: Buffer): { input: unknown } | string {
  const text = raw.toString("utf8");
  if (text.trim() === "") return { input: undefined };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return `the body is not valid JSON: ${(err as Error).message}`;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return 'the body must be a JSON object like {"input": …}';
  }
  return { input: (body as Record<string, unknown>).input };
}

export function taskIdOf(req: IncomingMessage): string {
  const header = req.headers[TASK_ID_HEADER];
  const value = Array.isArray(header) ? header[0] : header;
  return value && value.trim() !== "" ? value.trim() : randomUUID();
}

/** A retry count from the gateway: a small non-negative integer, else 0. */
function retriesOf(value: unknown): number {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 1000 ? n : 0;
}

async function invoke(state: RunnerState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { invoker } = state;
  if (state.phase === "stopping") return sendError(res, 503, "SHUTTING_DOWN", "the runner is shutting down; send the task to another container");
  if (!invoker) return sendError(res, 503, "NOT_READY", "the workload is still loading; retry when GET /health answers 200");
  const header = req.headers[TASK_RETRIES_HEADER];
  // Only the task dispatcher sends a retry count: a task attempt (task-attempts.ts), which outlives its caller.
  if (header !== undefined) return invokeTask(state, invoker, req, res, retriesOf(Array.isArray(header) ? header[0] : header));
  const invocation = invoker.begin(taskIdOf(req));
  if (!invocation) {
    return sendError(res, 503, "BUSY", `all ${state.concurrency} invocation slot(s) of this container are taken`);
  }
  // The open request is the task's heartbeat: if the caller goes away, the handler should stop.
  res.once("close", () => {
    if (!res.writableFinished) invocation.controller.abort(new DOMException("the caller closed the connection", "AbortError"));
  });
  try {
    const raw = await invocationBody(req, res);
    if (raw === undefined) return;
    const parsed = parseInvokeBody(raw);
    if (typeof parsed === "string") return sendError(res, 400, "INVALID_JSON", parsed);
    const reply = await invoker.run(invocation, parsed.input, { stream: true });
    await answer(res, reply, invocation, req.headers.accept);
  } finally {
    invocation.end();
  }
}

/** One task attempt by `POST /invoke`: joined to a running attempt of the same task, or answered from a kept success. */
async function invokeTask(state: RunnerState, invoker: Invoker, req: IncomingMessage, res: ServerResponse, retries: number): Promise<void> {
  const caller = callerSignal(res);
  const raw = await invocationBody(req, res);
  if (raw === undefined) return;
  const parsed = parseInvokeBody(raw);
  if (typeof parsed === "string") return sendError(res, 400, "INVALID_JSON", parsed);
  const reply = await (attemptsOf(state, invoker).run(taskIdOf(req), retries, parsed.input, caller) ?? busy(state));
  if (res.destroyed) return;
  res.writeHead(reply.status, { "content-type": "application/json", "content-length": Buffer.byteLength(reply.json) });
  res.end(reply.json);
}

/** Sends a reply (JSON, as it is) or streams what the handler returned; resolves once it is over. */
export async function answer(res: ServerResponse, reply: Reply | Streamable, invocation: { taskId: string; controller: AbortController }, accept: string | undefined): Promise<void> {
  if ("kind" in reply) return sendStream(res, reply, { taskId: invocation.taskId, accept, signal: invocation.controller.signal });
  if (res.destroyed) return;
  res.writeHead(reply.status, { "content-type": "application/json", "content-length": Buffer.byteLength(reply.json) });
  res.end(reply.json);
}

/**
 * A web app's request: `/web` + the app's path and query, the caller's method, headers and body
 * (stream.ts sends the app's Response back). The open request is the invocation's heartbeat, as
 * for /invoke.
 */
async function web(state: RunnerState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { invoker } = state;
  if (state.phase === "stopping") return sendError(res, 503, "SHUTTING_DOWN", "the runner is shutting down; send the request to another container");
  if (!invoker) return sendError(res, 503, "NOT_READY", "the workload is still loading; retry when GET /health answers 200");
  if (!invoker.webApp) return sendError(res, 404, "NOT_A_WEB_APP", "this workload is not a web app (webApp() from beta9); call POST /invoke");
  const invocation = invoker.begin(taskIdOf(req));
  if (!invocation) return sendError(res, 503, "BUSY", `all ${state.concurrency} invocation slot(s) of this container are taken`);
  res.once("close", () => {
    if (!res.writableFinished) invocation.controller.abort(new DOMException("the caller closed the connection", "AbortError"));
  });
  // An app that answered without reading the whole body leaves the rest unread on a kept-alive
  // connection: close it once the answer is out, rather than let it stall.
  res.once("finish", () => {
    if (!req.complete) req.destroy();
  });
  try {
    const reply = await invoker.runWeb(invocation, webRequest(req, req.url!.slice(WEB_PATH_PREFIX.length), invocation.controller.signal));
    await answer(res, reply, invocation, undefined);
  } finally {
    invocation.end();
  }
}

/** The request body, or undefined once the request was answered 413 (too large) or dropped (broken). */
async function invocationBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer | undefined> {
  try {
    return await readBody(req, MAX_BODY_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLargeError) sendError(res, 413, "PAYLOAD_TOO_LARGE", err.message, {}, { connection: "close" });
    else res.destroy();
    return undefined;
  }
}

/**
 * Several tasks in one request: body `{ tasks: [{ id, input }, …] }`, answered 200 with one
 * NDJSON line per task as it ends, `{ id, status, body }` (what /invoke would have answered that
 * task). Lines that end in the same turn go out in one write. Each task is an attempt of
 * task-attempts.ts: when the caller goes away its handlers run on, for the gateway that takes the
 * tasks over to join.
 */
async function invokeBatch(state: RunnerState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { invoker } = state;
  if (state.phase === "stopping") return sendError(res, 503, "SHUTTING_DOWN", "the runner is shutting down; send the task to another container");
  if (!invoker) return sendError(res, 503, "NOT_READY", "the workload is still loading; retry when GET /health answers 200");
  const raw = await invocationBody(req, res);
  if (raw === undefined) return;
  let tasks: unknown;
  try {
    tasks = (JSON.parse(raw.toString("utf8")) as { tasks?: unknown } | null)?.tasks;
  } catch (err) {
    return sendError(res, 400, "INVALID_JSON", `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(tasks) || tasks.some((t) => typeof t !== "object" || t === null || typeof (t as { id?: unknown }).id !== "string")) {
    return sendError(res, 400, "INVALID_JSON", 'the body must be a JSON object like {"tasks": [{"id": …, "input": …}]}');
  }
  const caller = callerSignal(res);
  const attempts = attemptsOf(state, invoker);
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  let lines: string[] = [];
  const flush = (): void => {
    if (lines.length === 0 || res.writableEnded || res.destroyed) return;
    const out = lines.join("");
    lines = [];
    res.write(out);
  };
  const answer = (id: string, reply: { status: number; json: string }): void => {
    if (lines.length === 0) setImmediate(flush);
    lines.push(`{"id":${JSON.stringify(id)},"status":${reply.status},"body":${reply.json}}\n`);
  };
  await Promise.all((tasks as { id: string; input?: unknown; retries?: unknown }[]).map(async ({ id, input, retries }) => {
    answer(id, await (attempts.run(id, retriesOf(retries), input, caller) ?? busy(state)));
  }));
  if (lines.length > 0) flush();
  res.end();
}

function cancel(state: RunnerState, taskId: string, res: ServerResponse): void {
  if (state.invoker?.cancel(taskId)) {
    res.writeHead(204);
    res.end();
    return;
  }
  sendError(res, 404, "TASK_NOT_FOUND", `no invocation of task ${taskId} is running in this container`);
}

/** A web app's route, told from the raw URL: `/web/../invoke` is the app's, never the runner's /invoke. */
export function isWebPath(rawUrl: string): boolean {
  return rawUrl.startsWith(WEB_PATH_PREFIX) && (rawUrl.length === WEB_PATH_PREFIX.length || "/?".includes(rawUrl[WEB_PATH_PREFIX.length]!));
}

function route(state: RunnerState, req: IncomingMessage, res: ServerResponse): void | Promise<void> {
  const path = new URL(req.url ?? "/", "http://runner").pathname;
  const method = req.method ?? "GET";
  if (path === "/health") return method === "GET" || method === "HEAD" ? health(state, res) : notAllowed(res, method, path, "GET");
  if (!authorized(state, req)) return sendError(res, 401, "AUTH_TOKEN_INVALID", "this runner answers its gateway only");
  if (isWebPath(req.url ?? "")) return web(state, req, res);
  if (path === "/invoke") return method === "POST" ? invoke(state, req, res) : notAllowed(res, method, path, "POST");
  if (path === "/invoke-batch") return method === "POST" ? invokeBatch(state, req, res) : notAllowed(res, method, path, "POST");
  const cancelMatch = /^\/cancel\/([^/]+)$/.exec(path);
  if (cancelMatch?.[1]) {
    if (method !== "POST") return notAllowed(res, method, path, "POST");
    let taskId: string;
    try {
      taskId = decodeURIComponent(cancelMatch[1]);
    } catch {
      return sendError(res, 400, "INVALID_TASK_ID", `"${cancelMatch[1]}" is not a valid URL-encoded task id`);
    }
    return cancel(state, taskId, res);
  }
  sendError(res, 404, "ROUTE_NOT_FOUND", `the runner has no route ${method} ${path}`);
}

function notAllowed(res: ServerResponse, method: string, path: string, allow: string): void {
  sendError(res, 405, "METHOD_NOT_ALLOWED", `${method} ${path} is not supported; use ${allow}`, {}, { allow });
}

/**
 * An HTTP server answering the runner protocol from `state`; the caller listens on it.
 *
 * @example
 * const server = createRunnerServer({ phase: "starting", invoker: undefined, containerId: "c1", startedAt: Date.now(), concurrency: 1 });
 * server.listen(8000, "0.0.0.0");
 */
export function createRunnerServer(state: RunnerState): Server {
  const server = createServer((req, res) => {
    Promise.resolve(route(state, req, res)).catch((err: unknown) => {
      process.stderr.write(`runner: internal error on ${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}\n`);
      if (!res.headersSent) sendError(res, 500, "RUNNER_ERROR", "the runner failed to answer this request");
      else res.destroy();
    });
  });
  // WebSockets: realtime endpoints and web apps (realtime.ts).
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(state, req, socket, head).catch((err: unknown) => {
      process.stderr.write(`runner: internal error on the upgrade ${req.url}: ${(err as Error)?.stack ?? String(err)}\n`);
      socket.destroy();
    });
  });
  return server;
}
