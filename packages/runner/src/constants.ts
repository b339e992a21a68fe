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
/** Marker property on every workload object (protocol: WORKLOAD_MARKER). */
export const WORKLOAD_MARKER = "__beta9Workload";
/** Largest /invoke body accepted; larger ones get 413. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** How long SIGTERM waits for in-flight invocations when $BETA9_GRACE_MS is unset. */
export const DEFAULT_GRACE_MS = 10_000;
/** Sandbox daemon's exposed-port route and the headers naming port and path (protocol: sandbox-protocol.ts). */
export const PROXY_PATH = "/proxy";
export const PROXY_PORT_HEADER = "x-beta9-proxy-port";
export const PROXY_PATH_HEADER = "x-beta9-proxy-path";
