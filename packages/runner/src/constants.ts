/**
 * Values the runner shares with `@beta9/protocol` (runner-protocol.ts). Copied, not imported: the
 * runner is mounted into images that have no node_modules, so it may import nothing but Node's
 * built-ins at run time. `constants.test.ts` checks that the copies still match the contract.
 */

/** Port the runner listens on when $PORT is unset (protocol: RUNNER_PORT). */
export const DEFAULT_PORT = 8000;
/** Header carrying the task id of an invocation (protocol: TASK_ID_HEADER). */
export const TASK_ID_HEADER = "x-beta9-task-id";
/** Header carrying the failed attempts before this one (protocol: TASK_RETRIES_HEADER). */
export const TASK_RETRIES_HEADER = "x-beta9-task-retries";
/** The gateway's per-container secret, required on every call but /health (protocol: RUNNER_SECRET_ENV). */
export const RUNNER_SECRET_ENV = "BETA9_RUNNER_SECRET";
/** Marks a streamed answer (protocol: STREAM_HEADER). */
export const STREAM_HEADER = "x-beta9-stream";
/** Route prefix of a web app's requests (protocol: WEB_PATH_PREFIX). */
export const WEB_PATH_PREFIX = "/web";
/** Route prefix of a realtime endpoint's WebSocket upgrades (protocol: REALTIME_PATH_PREFIX). */
export const REALTIME_PATH_PREFIX = "/realtime";
/** The caller's own Authorization for a web app (protocol: WEB_AUTHORIZATION_HEADER). */
export const WEB_AUTHORIZATION_HEADER = "x-beta9-authorization";
/** Marker property on every workload object (protocol: WORKLOAD_MARKER). */
export const WORKLOAD_MARKER = "__beta9Workload";
/** Starts and ends the tag in front of a line a task printed (protocol: logs.ts). */
export const TASK_LOG_TAG_PREFIX = "\u001b_beta9-task:";
export const TASK_LOG_TAG_END = "\u001b\\";
/** Largest /invoke body accepted; larger ones get 413. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** How long SIGTERM waits for in-flight invocations when $BETA9_GRACE_MS is unset. */
export const DEFAULT_GRACE_MS = 10_000;
/** Sandbox daemon's exposed-port route and the headers naming port and path (protocol: sandbox-protocol.ts). */
export const PROXY_PATH = "/proxy";
export const PROXY_PORT_HEADER = "x-beta9-proxy-port";
export const PROXY_PATH_HEADER = "x-beta9-proxy-path";
