/**
 * The runner protocol: how the gateway hands work to a workload container. Plain HTTP/JSON on
 * the container's $PORT, so a Python runner can speak it too. The gateway calls the runner (the
 * container never needs to reach the gateway): the open /invoke request is an endpoint call's
 * heartbeat (its caller hanging up aborts ctx.signal).
 *
 * Task attempts (/invoke-batch, and /invoke with x-beta9-task-retries: only the task dispatcher
 * sends it) outlive their caller instead, for the gateway that takes the task over when the one
 * that sent it dies (runner task-attempts.ts, Python attempts.py): a hung-up attempt runs on (its
 * signal aborts only if nobody asks for the task again within 120 s); an attempt of a task still
 * running joins it (one handler run, its answer to both); a success is answered again, not run
 * again, for 120 s. Deliberate stops come as /cancel/:taskId.
 *
 *   GET  /health            503 while loading or running onStart, then 200 { status: "ok" }
 *   POST /invoke            body { input }, headers x-beta9-task-id and x-beta9-task-retries (failed
 *                           attempts before this one; its presence marks a task attempt)
 *                           → 200 { result } | 422 { error: { code: "INPUT_INVALID", message } }
 *                           | 500 { error: { code: "HANDLER_ERROR", message, stack? } }
 *                           | 503 { error: { code: "BUSY", … } } when all slots are taken
 *   POST /invoke-batch      body { tasks: [{ id, input, retries? }, …] } → 200 application/x-ndjson, one line
 *                           { id, status, body } per task as it ends (status and body as /invoke
 *                           would answer it); each task is a task attempt (above)
 *   POST /cancel/:taskId    aborts that invocation's ctx.signal → 204 (404 if unknown)
 *   ANY  /web/<path>?<q>    a web app's request (stub config webApp): method, the app's path and
 *                           query, the caller's headers and body; answered by the app's Response
 *   GET  /realtime/<path>?<q> with Upgrade: websocket: a realtime endpoint's socket (stub config
 *                           realtime) → 101, then the handler gets it; GET /web/… with the same
 *                           headers is a web app's upgrade (the app accepts it or answers it).
 *                           A socket holds an invocation slot until it closes.
 *
 * Streaming: an endpoint handler that returns a Response, a ReadableStream or an async iterable
 * (an async generator) is answered 200 (or the Response's status) with header x-beta9-stream and
 * the body streamed as it is produced: a Response as it is; a byte stream raw (octet-stream, or
 * text/plain when its first chunk is a string); an async iterable as Server-Sent Events, one
 * `data:` event per item (objects as JSON), or NDJSON when the caller's Accept asks for
 * application/x-ndjson. A handler that throws mid-stream ends it with `event: error` (SSE) or an
 * `{"error":…}` line (NDJSON). Answers without x-beta9-stream are the JSON ones above (web apps:
 * 500 HANDLER_ERROR, 502 WEBAPP_BAD_RESPONSE when the app returns no Response). Only endpoints
 * stream: a task queue's or function's handler that returns a stream gets 500 STREAM_NOT_SUPPORTED.
 *
 * Environment the worker gives the runner: PORT, BETA9_HANDLER ("relative/file.js:exportName",
 * relative to BETA9_CODE_DIR), BETA9_CODE_DIR (the unpacked bundle, read-only), BETA9_CONCURRENCY
 * (parallel invocations), BETA9_CONTAINER_ID, BETA9_STUB_ID, BETA9_RUNNER_SECRET (see RUNNER_SECRET_ENV).
 */

export const RUNNER_PORT = 8000;
export const CODE_MOUNT_PATH = "/app";
export const TASK_ID_HEADER = "x-beta9-task-id";
export const TASK_RETRIES_HEADER = "x-beta9-task-retries";
/**
 * The per-container secret the gateway shows the runner (`authorization: Bearer <it>`) on every
 * call but /health: another container on the same bridge cannot invoke or cancel this one's work.
 */
export const RUNNER_SECRET_ENV = "BETA9_RUNNER_SECRET";
/** On a runner's answer: the body is a stream (its value: response, bytes or events), not `{ result }` JSON. */
export const STREAM_HEADER = "x-beta9-stream";
/** The runner's route prefix for a web app's requests: `/web` + the app's own path. */
export const WEB_PATH_PREFIX = "/web";
/**
 * The runner's route for a realtime endpoint's WebSockets: `GET /realtime/<path>?<q>` with
 * `Upgrade: websocket`, answered 101 and handed to the handler as a socket. A web app's sockets
 * are upgrades under /web, which the app accepts with upgradeWebSocket(request) or answers itself.
 */
export const REALTIME_PATH_PREFIX = "/realtime";
/**
 * The caller's own Authorization for a web app (the runner's is the container secret); the runner
 * hands it to the app as `authorization`. Public web apps get the caller's header this way.
 */
export const WEB_AUTHORIZATION_HEADER = "x-beta9-authorization";

/** The marker the SDK puts on every workload object; the runner and CLI look for it. */
export const WORKLOAD_MARKER = "__beta9Workload";

export type WorkloadKind = "endpoint" | "taskqueue" | "function" | "schedule";

/** What `endpoint(...)`, `taskQueue(...)`, `fn(...)` and `schedule(...)` return, as the runner sees it. */
export interface WorkloadDescriptor {
  [WORKLOAD_MARKER]: true;
  kind: WorkloadKind;
  /** Stub name and config input, as the user wrote them (validated by the gateway). */
  name: string;
  config: Record<string, unknown>;
  handler: (input: unknown, ctx: InvocationContext) => unknown;
  onStart?: () => unknown;
  /** Validates input before the handler runs; returns the message of the first problem, or undefined. */
  validateInput?: (input: unknown) => string | undefined;
}
/*
 * A web app (`webApp()`) is a descriptor of kind "endpoint" whose config has `webApp: true`: its
 * handler takes a Fetch API Request (and the InvocationContext) and must return a Response.
 */

export interface InvocationContext {
  taskId: string;
  containerId: string;
  /** Attempts of this task that failed before this one (0 on the first attempt; always 0 for endpoints). */
  retries: number;
  /** Aborted when the task is cancelled or times out. */
  signal: AbortSignal;
  /** What onStart returned, once per container. */
  onStartValue: unknown;
}

export function isWorkload(value: unknown): value is WorkloadDescriptor {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[WORKLOAD_MARKER] === true;
}
