/**
 * The runner client: the only gateway code that speaks the runner protocol (@beta9/protocol
 * runner-protocol.ts): its paths, headers, the per-container secret, timeouts, and how an answer
 * is read. Every call ends in one typed outcome, so invocations (api/invoke.ts, webapp.ts) and
 * the task dispatcher map the same answer the same way:
 *
 *   ok            200 { result }
 *   stream        an answer with x-beta9-stream (an endpoint's or a web app's streamed body)
 *   inputInvalid  422: the handler (or its schema) refused the input
 *   handlerError  any other answer: the handler threw (500), a web app returned no Response (502),
 *                 or the runner answered something else (its status is kept)
 *   lost          the exchange failed: the container or its worker went away
 *   timedOut      no answer within the call's timeout
 *   cancelled     the caller aborted the call
 *
 * A caller that aborts a call says why with the reason classes below (never a string to compare).
 */
import type { Readable } from "node:stream";
import { Pool, request, type Dispatcher } from "undici";
import {
  Beta9Error, REALTIME_PATH_PREFIX, RUNNER_PORT, RUNNER_SECRET_ENV, STREAM_HEADER, TASK_ID_HEADER, WEB_AUTHORIZATION_HEADER, WEB_PATH_PREFIX,
} from "@beta9/protocol";
import { RunnerBatches } from "./runner-batch.js";

/** A ready container's runner, as a slot gives it (instance-pool.ts). */
export interface RunnerTarget {
  /** http://host:port of the runner. */
  origin: string;
  /** Kept-alive connections to it; every request carries the container's secret. */
  runner: Dispatcher;
  /** The Authorization header the runner expects, for connections made outside `runner` (WebSocket upgrades). */
  authorization: string;
}

/** A runner's JSON answer, parsed. */
export interface RunnerBody {
  result?: unknown;
  error?: { code?: string; message?: string; stack?: unknown };
}

export type Failure =
  | { kind: "inputInvalid"; message?: string }
  | { kind: "handlerError"; status: number; message?: string; code?: string; stack?: string }
  /**
   * `exited`: the gateway saw the container exit (ContainerLost), rather than the exchange fail.
   * `notSent`: the connection itself failed (refused, unreachable): the runner never got the call.
   */
  | { kind: "lost"; reason: string; exited?: boolean; notSent?: boolean }
  | { kind: "timedOut" }
  | { kind: "cancelled" };
export type Outcome<T> = { kind: "ok"; result: T } | Failure;
/** An endpoint call or a web app's request: a whole answer, or a stream to relay. */
export type CallOutcome<T> = Outcome<T> | { kind: "stream"; res: Dispatcher.ResponseData };

/** Errors of a connection that was never made: nothing reached the runner. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "UND_ERR_CONNECT_TIMEOUT"]);

/** Abort reason: the call ran past its timeout. */
export class CallTimedOut extends Error {
  constructor() {
    super("the call ran past its timeout");
  }
}

/** Abort reason: the container serving the call exited (its worker died, OOM…). */
export class ContainerLost extends Error {
  constructor(readonly containerId: string, readonly reason: string) {
    super(`container ${containerId} exited: ${reason}`);
  }
}

/** The most of a runner's whole (not streamed) answer the gateway holds: a result, or an error. */
export const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
/** A handler's stack (both runners send it) as far as anyone gets it: bounded, text only. */
const MAX_STACK_CHARS = 16 * 1024;
/** How much of a web app's error answer is read (its first bytes say enough). */
const WEB_ERROR_BYTES = 64 * 1024;

/**
 * The one status→outcome mapping. `result` reads a 200's value (callers differ in what they keep:
 * JSON text on the hot path, a parsed value for tasks); `error` the `{ error }` body; `text` is the
 * raw body when there is one (its start is the message when the body says none).
 */
export function outcomeOf<T>(statusCode: number, read: { result: () => T; error: () => RunnerBody["error"]; text?: string }): Outcome<T> {
  if (statusCode === 200) return { kind: "ok", result: read.result() };
  return refusalOf(statusCode, read.error(), read.text);
}

/** A non-result answer as an outcome (also a web app's answer that is not a stream, whatever its status). */
function refusalOf(statusCode: number, error: RunnerBody["error"], text?: string): Failure {
  const message = error?.message ?? text?.slice(0, 500);
  if (statusCode === 422) return { kind: "inputInvalid", message };
  const stack = typeof error?.stack === "string" ? error.stack.slice(0, MAX_STACK_CHARS) : undefined;
  return { kind: "handlerError", status: statusCode, message, ...(error?.code !== undefined && { code: error.code }), ...(stack !== undefined && { stack }) };
}

/** An exchange that threw: why, from the caller's abort reason or undici's own timeouts. */
export function failureOf(err: unknown, signal?: AbortSignal): Failure {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof CallTimedOut) return { kind: "timedOut" };
    if (reason instanceof ContainerLost) return { kind: "lost", reason: reason.reason, exited: true };
    return { kind: "cancelled" };
  }
  const code = (err as { code?: string }).code;
  // headers: time to the first byte; body: the longest gap between chunks.
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") return { kind: "timedOut" };
  return { kind: "lost", reason: (err as Error).message, ...(code !== undefined && NOT_CONNECTED.has(code) && { notSent: true }) };
}

function parsedError(text: string): RunnerBody["error"] {
  try {
    return (JSON.parse(text) as RunnerBody).error;
  } catch {
    return undefined;
  }
}

/**
 * A runner's whole answer as text, at most `limit` bytes: the runner is the tenant's code, and a
 * body without end would otherwise be held whole. Undici's own text() when the length is declared
 * and within it (the runners declare it), else read chunk by chunk and cut off.
 */
export async function answerText(res: Dispatcher.ResponseData, limit = MAX_ANSWER_BYTES, options: { truncate?: boolean } = {}): Promise<string> {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared <= limit) return res.body.text();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      // An error's first bytes say enough; a result cut short would be wrong.
      if (options.truncate) return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
      const mib = limit / 1024 / 1024;
      throw new Beta9Error("UPSTREAM_FAILED", { reason: `its answer is larger than ${mib} MiB; return less, or stream it (return an async iterable or a ReadableStream)` });
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The result inside the runner's `{"result":…}` answer, as JSON text. The runner writes exactly
 * `JSON.stringify({ result })` (runner-protocol), so the value is the text between the key and the
 * closing brace: no parse and re-serialization on the hot path. Anything else is parsed.
 */
const RESULT_PREFIX = '{"result":';
export function resultJsonOf(text: string): string {
  if (text.startsWith(RESULT_PREFIX) && text.endsWith("}")) return text.slice(RESULT_PREFIX.length, -1);
  return JSON.stringify((JSON.parse(text) as { result?: unknown }).result ?? null);
}

const isStream = (res: Dispatcher.ResponseData): boolean => res.headers[STREAM_HEADER] !== undefined;

/** Marks a relayed stream's headers as the caller's (the protocol's own header is dropped). */
export function streamHeaders(res: Dispatcher.ResponseData): Dispatcher.ResponseData {
  delete res.headers[STREAM_HEADER];
  return res;
}

/**
 * An endpoint call (`POST /invoke`): the result as JSON text, or the stream the handler returned.
 * The answer's headers must come within `timeoutMs`, and a stream may then run as long as it
 * sends, each gap between chunks bounded by the same timeout.
 */
export async function invokeEndpoint(
  target: RunnerTarget, call: { input: unknown; taskId: string; accept?: string; timeoutMs: number },
): Promise<CallOutcome<string>> {
  const headers: Record<string, string> = { "content-type": "application/json", [TASK_ID_HEADER]: call.taskId };
  if (call.accept !== undefined) headers.accept = call.accept;
  let res: Dispatcher.ResponseData;
  try {
    res = await target.runner.request({
      path: "/invoke", method: "POST", headers, body: JSON.stringify({ input: call.input }), headersTimeout: call.timeoutMs, bodyTimeout: call.timeoutMs,
    });
  } catch (err) {
    return failureOf(err);
  }
  if (isStream(res)) return { kind: "stream", res };
  const text = await answerText(res);
  return outcomeOf(res.statusCode, { result: () => resultJsonOf(text), error: () => parsedError(text), text });
}

/** The headers a web app's request or socket carries to the runner: the caller's own Authorization (if the app gets it) under its protocol name. */
function appHeaders(headers: Record<string, string>, taskId: string, appAuthorization: string | undefined): Record<string, string> {
  const out: Record<string, string> = { ...headers, [TASK_ID_HEADER]: taskId };
  if (appAuthorization !== undefined) out[WEB_AUTHORIZATION_HEADER] = appAuthorization;
  return out;
}

/**
 * A web app's request (`ANY /web/<path>`): its Response comes back as a stream; any other answer
 * (the app threw, or returned no Response) is a failure, read up to its first 64 KiB.
 * `appAuthorization`: the caller's Authorization, for an app that may see it (the runner's own is the container secret).
 */
export async function requestWebApp(
  target: RunnerTarget,
  call: { path: string; method: Dispatcher.HttpMethod; headers: Record<string, string>; body: Readable | null; taskId: string; timeoutMs: number; appAuthorization?: string },
): Promise<{ kind: "stream"; res: Dispatcher.ResponseData } | Failure> {
  let res: Dispatcher.ResponseData;
  try {
    res = await target.runner.request({
      path: `${WEB_PATH_PREFIX}${call.path}`, method: call.method, headers: appHeaders(call.headers, call.taskId, call.appAuthorization),
      body: call.body, headersTimeout: call.timeoutMs, bodyTimeout: call.timeoutMs,
    });
  } catch (err) {
    return failureOf(err);
  }
  if (isStream(res)) return { kind: "stream", res };
  const text = await answerText(res, WEB_ERROR_BYTES, { truncate: true });
  return refusalOf(res.statusCode, parsedError(text), text);
}

/**
 * A plain HTTP request to a container's own server (a pod: no runner protocol, the answer is
 * the tenant's as is), with the same timeouts and failure outcomes as a runner call.
 */
export async function forwardRequest(
  target: Pick<RunnerTarget, "runner">,
  call: { path: string; method: Dispatcher.HttpMethod; headers: Record<string, string>; body: Readable | null; timeoutMs: number },
): Promise<{ kind: "response"; res: Dispatcher.ResponseData } | Failure> {
  try {
    const res = await target.runner.request({ path: call.path, method: call.method, headers: call.headers, body: call.body, headersTimeout: call.timeoutMs, bodyTimeout: call.timeoutMs });
    return { kind: "response", res };
  } catch (err) {
    return failureOf(err);
  }
}

/** Task attempts go out several per request (runner-batch.ts); one table for the gateway. */
const batches = new RunnerBatches();

/**
 * One task attempt (`POST /invoke-batch` or `/invoke`). Never rejects: `signal`'s abort reason
 * (CallTimedOut, ContainerLost, anything else: cancelled) says what the outcome is.
 */
export async function runTask(runner: Dispatcher, task: { id: string; inputJson: string; retries: number }, signal: AbortSignal): Promise<Outcome<unknown>> {
  try {
    const answer = await batches.call(runner, task.id, task.inputJson, signal, task.retries);
    return outcomeOf(answer.statusCode, { result: () => answer.body.result ?? null, error: () => answer.body.error });
  } catch (err) {
    return failureOf(err, signal);
  }
}

/** Aborts an invocation's ctx.signal in the runner (`POST /cancel/:taskId`); failures are ignored. */
export async function cancelInvocation(runner: Dispatcher, taskId: string): Promise<void> {
  await runner.request({ path: `/cancel/${encodeURIComponent(taskId)}`, method: "POST" }).then((r) => r.body.dump(), () => undefined);
}

/** Whether the runner answers /health 200: its user module is loaded and onStart ran. */
export function runnerReady(origin: string): Promise<boolean> {
  return request(`${origin}/health`, { headersTimeout: 2000, bodyTimeout: 2000 }).then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
}

/** Where a WebSocket upgrade to the runner goes: its address, route and headers (the runner's Authorization, the app's own). */
export function upgradeTarget(
  target: RunnerTarget, route: "web" | "realtime", path: string, headers: Record<string, string>, taskId: string, appAuthorization?: string,
): { host: string; port: number; path: string; headers: Record<string, string> } {
  const origin = new URL(target.origin);
  const prefix = route === "web" ? WEB_PATH_PREFIX : REALTIME_PATH_PREFIX;
  return { host: origin.hostname, port: Number(origin.port), path: `${prefix}${path}`, headers: { ...appHeaders(headers, taskId, appAuthorization), authorization: target.authorization } };
}

/** What a runner container is started with: the runner command, its port, and the secret it checks. */
export function runnerContainerParts(secret: string): { command: string[]; ports: number[]; env: Record<string, string> } {
  return { command: ["runner"], ports: [RUNNER_PORT], env: { [RUNNER_SECRET_ENV]: secret } };
}

/** The port a runner serves on (its container's published port). */
export const RUNNER_SERVED_PORT = RUNNER_PORT;

/**
 * Kept-alive connections to one container, shared by every invocation. With a `secret`, every
 * request carries it (a runner); without, requests go as they are (a pod's own server).
 */
export function connect(origin: string, connections: number, secret?: string): Dispatcher {
  const pool = new Pool(origin, { connections, keepAliveTimeout: 60_000 });
  if (secret === undefined) return pool;
  const authorization = `Bearer ${secret}`;
  return pool.compose((dispatch) => (opts, handler) => dispatch({ ...opts, headers: { ...(opts.headers as Record<string, string>), authorization } }, handler));
}
