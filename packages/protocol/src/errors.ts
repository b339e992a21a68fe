/**
 * The one catalogue of errors that beta9-ts answers with. Every error a client can see has a
 * stable `code` (never renamed once released), an HTTP status, and a message template that says
 * what to fix. Gateway, SDK and CLI all read this table, so a code means the same thing everywhere.
 *
 * Templates use `{name}` placeholders filled from the `params` given when the error is raised.
 */
export const errorCatalogue = {
  AUTH_TOKEN_MISSING: {
    status: 401,
    message: 'Send a token as "Authorization: Bearer <token>" (beta9 config create, or BETA9_TOKEN)',
  },
  AUTH_TOKEN_INVALID: {
    status: 401,
    message: "The token is unknown or revoked; create a new one with `beta9 token create`",
  },
  AUTH_FORBIDDEN: {
    status: 403,
    message: "A {tokenType} token cannot {action}; use a token of type {allowed}",
  },
  ROUTE_NOT_FOUND: { status: 404, message: "No route {method} {url}; see GET /api/v1/openapi.json" },
  RESOURCE_NOT_FOUND: { status: 404, message: "No {kind} {id} in this workspace" },
  INVALID_JSON: { status: 400, message: "The request body is not valid JSON: {reason}" },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: "Content-Type {contentType} is not accepted here; send {expected}",
  },
  VALIDATION_FAILED: { status: 422, message: "{location}{path} {reason}" },
  INVALID_CONFIG: { status: 422, message: "config.{field}: {reason}" },
  BODY_TOO_LARGE: { status: 413, message: "The request body exceeds the limit of {limit} bytes" },
  OBJECT_TOO_LARGE: {
    status: 413,
    message: "The object exceeds the upload limit of {limit} bytes; add large files to .beta9ignore",
  },
  OBJECT_HASH_MISMATCH: {
    status: 422,
    message: "The uploaded bytes hash to sha256 {actual}, not {expected}; upload the bytes the hash names",
  },
  BUNDLE_INVALID: { status: 422, message: "The code bundle is not acceptable: {reason}" },
  STUB_NOT_DEPLOYABLE: {
    status: 422,
    message: "Stub {id} is of type {type}; deploy a stub whose type ends in /deployment",
  },
  IMAGE_SPEC_INVALID: { status: 422, message: "The image spec is not valid: {reason}" },
  IMAGE_NOT_READY: {
    status: 409,
    message: "Image {id} is {status}; wait for its build to finish (beta9 image list) or build it again",
  },
  // Image builds fail with these (the image's `error` starts with the code).
  REGISTRY_AUTH_FAILED: { status: 401, message: "{registry} refused the credentials in {secrets}; check the secret values (beta9 secret update)" },
  REGISTRY_AUTH_REQUIRED: {
    status: 401,
    message: "{registry} requires credentials to pull {image}; create secrets and pass credentials (Image.fromRegistry(ref, { credentials }))",
  },
  HANDLER_ERROR: { status: 500, message: "The handler failed: {reason}" },
  TASK_TIMEOUT: { status: 504, message: "{name} ran past its timeout of {timeout} s (task {id}); raise the workload's timeout or make the handler faster" },
  TASK_CANCELLED: { status: 409, message: "Task {id} of {name} was cancelled before it finished" },
  INPUT_INVALID: { status: 422, message: "{reason}" },
  UPSTREAM_FAILED: { status: 502, message: "The container could not answer: {reason}" },
  WEBSOCKET_NOT_SUPPORTED: { status: 400, message: "{name} does not accept WebSockets: {reason}" },
  POD_NOT_READY: {
    status: 503,
    message: "Pod {name}: {reason}; see beta9 container logs {containerId}",
  },
  WEBAPP_BAD_RESPONSE: { status: 502, message: "The web app's handler did not answer with a Response: {reason}" },
  DEPLOYMENT_STOPPED: { status: 409, message: "Deployment {name} v{version} is stopped; start it with beta9 deployment start {id}" },
  QUEUE_FULL: { status: 429, message: "{name} has {count} tasks pending or running (maxPendingTasks {limit}); retry later" },
  NAME_TAKEN: { status: 409, message: "A {kind} named {name} already exists" },
  CONFLICT: { status: 409, message: "{reason}" },
  REQUEST_TIMEOUT: { status: 408, message: "The request was not received in full within {seconds} s; send it faster or in smaller parts" },
  SECRET_NOT_FOUND: { status: 404, message: "No secret {name} in this workspace; create it with `beta9 secret create {name}`" },
  SECRET_EXISTS: { status: 409, message: "Secret {name} already exists; change its value with `beta9 secret update {name}`" },
  SECRETS_FULL: { status: 429, message: "This workspace holds {limit} secrets, the most it may; delete some first" },
  VOLUME_NOT_FOUND: { status: 404, message: "No volume {name} in this workspace; create it with `beta9 volume create {name}`" },
  VOLUME_PATH_INVALID: { status: 422, message: "Volume path {path}; paths are relative to the volume's root, e.g. data/model.bin" },
  VOLUME_PATH_NOT_FOUND: { status: 404, message: "Volume {name} has no file or directory {path} (beta9 ls {name})" },
  VOLUME_NOT_MOUNTED: { status: 404, message: "This container does not mount a volume {name} (it mounts: {mounted}); commit() and reload() work on the container's own volumes" },
  VOLUME_BLOB_MISSING: { status: 409, message: "{count} file contents of this commit are not stored (first: {hash}); upload them and commit again" },
  POOL_NOT_FOUND: { status: 404, message: "No pool {pool}; create it with `beta9 pool create {pool}` or use pool default" },
  MACHINE_NOT_REGISTERED: {
    status: 409,
    message: "Machine {id} is {state}; its agent must register first (POST /api/v1/machine/register; restarting b9agent does it)",
  },
  SHELL_FAILED: { status: 502, message: "The shell session ended without an exit status: {reason}" },
  CONTAINER_NOT_RUNNING: { status: 409, message: "Container {id} is {state}; a shell needs a running container (beta9 container list)" },
  SANDBOX_NOT_RUNNING: { status: 409, message: "Sandbox {id} is {state} ({reason}); create a new one" },
  WORKLOAD_NOT_DEPLOYED: {
    status: 404,
    message: "{kind} {name} has no active deployment; deploy it first: `beta9 deploy FILE:EXPORT` or `await {export}.deploy()`",
  },
  // The CLI's saved contexts (~/.beta9/config.json), read by the CLI and by the SDK's default client.
  CONFIG_INVALID: { status: 400, message: "{path}: {reason}; fix or delete it" },
  CONFIG_UNREADABLE: { status: 500, message: "cannot read {path}: {reason}" },
  BAD_REQUEST: { status: 400, message: "{reason}" },
  INTERNAL: { status: 500, message: "Internal error (request id {requestId}); the gateway log has details" },
  UNAVAILABLE: { status: 503, message: "{reason}" },
  CAPACITY_UNAVAILABLE: { status: 503, message: "{reason}" },
  QUOTA_EXCEEDED: { status: 429, message: "This workspace has {count} {kind}, the most it may have ({limit}); {hint}" },
  STORAGE_FULL: {
    status: 507,
    message: "The gateway's data disk is full, so nothing was changed; reads still work. An operator must free space in the data dir's disk or grow it",
  },
  STORE_UNAVAILABLE: {
    status: 503,
    message: "The gateway cannot reach its database now ({reason}); it reconnects by itself: try again shortly",
  },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;
export type ErrorParams = Record<string, string | number>;

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

export function formatErrorMessage(code: ErrorCode, params: ErrorParams = {}): string {
  return errorCatalogue[code].message.replace(/\{(\w+)\}/g, (whole, key: string) =>
    key in params ? String(params[key]) : whole,
  );
}

/** An error with a catalogue code; thrown anywhere, rendered as an {@link ErrorBody}. */
export class Beta9Error extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ErrorCode, params: ErrorParams = {}, details?: unknown) {
    super(formatErrorMessage(code, params));
    this.name = "Beta9Error";
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.details = details;
    Object.setPrototypeOf(this, new.target.prototype);
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: { code: this.code, message: this.message } };
    if (this.details !== undefined) body.error.details = this.details;
    return body;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(errorCatalogue, value);
}

/** What an error answer said: the catalogue's code, message and details when its body is an {@link ErrorBody}. */
export interface ParsedErrorBody {
  /** The body's code (a newer gateway may send one this side does not know yet), or `HTTP_<status>`. */
  code: string;
  /** The body's message, or its text (trimmed, at most 500 characters) when it is not an error body. */
  message: string;
  details?: unknown;
  /** Whether the body was an error body (false: a proxy's page, an empty HEAD answer…). */
  structured: boolean;
}

/**
 * The one reader of error answers, for every client of the gateway (SDK, CLI, agent, worker) and of
 * a worker's control socket: never throws, whatever the body holds.
 */
export function parseErrorBody(status: number, body: string | Uint8Array): ParsedErrorBody {
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  let error: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    error = text.length > 0 ? (JSON.parse(text) as { error?: typeof error } | null)?.error : undefined;
  } catch {
    error = undefined;
  }
  if (error && typeof error === "object" && typeof error.code === "string" && error.code !== "") {
    return { code: error.code, message: typeof error.message === "string" ? error.message : "", ...(error.details !== undefined && { details: error.details }), structured: true };
  }
  return { code: `HTTP_${status}`, message: text.trim().slice(0, 500), structured: false };
}
