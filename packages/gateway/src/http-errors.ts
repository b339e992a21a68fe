/**
 * Turns everything a route can throw into the catalogue's JSON error shape. Fastify's own errors
 * (bad JSON, body too large, wrong media type, schema validation) are mapped to stable codes, so
 * a client never sees a fastify-internal code or a 500 for its own mistake.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Beta9Error, type ErrorCode, type ErrorParams } from "@beta9/protocol";

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

function describeValidation(location: string, errors: AjvError[]): ErrorParams {
  const first = errors[0]!;
  const path = first.instancePath.replace(/\//g, ".");
  const anyOf = errors.find((e) => e.keyword === "anyOf");
  let reason = first.message ?? "is invalid";
  if (first.keyword === "additionalProperties") {
    reason = `has an unknown property "${String(first.params.additionalProperty)}"; remove it or check its spelling`;
  } else if (first.keyword === "required") {
    // The missing field's full place (body.config.autoscaler.type), not only its name.
    return { location, path: `${path}.${String(first.params.missingProperty)}`, reason: "is required" };
  } else if (first.keyword === "enum") {
    reason = `must be one of: ${(first.params.allowedValues as unknown[]).join(", ")}`;
  } else if (anyOf) {
    const types = errors.filter((e) => e.keyword === "type" && e.instancePath === anyOf.instancePath).map((e) => e.params.type);
    reason = types.length > 0 ? `must be a ${types.join(" or a ")}` : "does not match any allowed shape";
    return { location, path: anyOf.instancePath.replace(/\//g, "."), reason };
  }
  return { location, path, reason };
}

/**
 * A write that failed for want of space: the OS's ENOSPC/EDQUOT (object and image files), SQLite's
 * SQLITE_FULL or Postgres's disk_full, SQLSTATE 53100 (the store), also when wrapped as another
 * error's cause.
 */
export function isStorageFull(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "SQLITE_FULL" || code === "53100") return true;
  }
  return false;
}

/** Maps a fastify or unknown error to a catalogue code; unknown errors become INTERNAL. */
export function toBeta9Error(err: FastifyError, request: FastifyRequest): Beta9Error {
  if (err instanceof Beta9Error) return err;
  if (err.validation) {
    const location = err.validationContext === "querystring" ? "query" : (err.validationContext ?? "request");
    return new Beta9Error("VALIDATION_FAILED", describeValidation(location, err.validation as AjvError[]));
  }
  const byFastifyCode: Record<string, [ErrorCode, ErrorParams]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: ["BODY_TOO_LARGE", { limit: request.routeOptions.bodyLimit ?? 0 }],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: [
      "UNSUPPORTED_MEDIA_TYPE",
      { contentType: String(request.headers["content-type"] ?? "(none)"), expected: "application/json" },
    ],
    FST_ERR_CTP_EMPTY_JSON_BODY: ["INVALID_JSON", { reason: "the body is empty; send a JSON object" }],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: ["BAD_REQUEST", { reason: "Content-Length does not match the body" }],
    FST_ERR_CTP_INVALID_JSON_BODY: ["INVALID_JSON", { reason: err.message }],
  };
  const mapped = err.code ? byFastifyCode[err.code] : undefined;
  if (mapped) return new Beta9Error(mapped[0], mapped[1]);
  if (isStorageFull(err)) return new Beta9Error("STORAGE_FULL");
  if (err instanceof SyntaxError && err.statusCode === 400) return new Beta9Error("INVALID_JSON", { reason: err.message });
  if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
    return new Beta9Error("BAD_REQUEST", { reason: err.message });
  }
  return new Beta9Error("INTERNAL", { requestId: request.id });
}

/**
 * Seconds a client should wait before it tries again (`Retry-After`), for the errors that say
 * "later" rather than "never": a full queue drains as its tasks end.
 */
export const RETRY_AFTER_SECONDS: Partial<Record<ErrorCode, number>> = { QUEUE_FULL: 1, STORE_UNAVAILABLE: 2 };

export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = toBeta9Error(err, request);
    if (mapped.status >= 500) request.log.error({ err }, "request failed");
    else request.log.debug({ code: mapped.code, message: mapped.message }, "request rejected");
    const retryAfter = RETRY_AFTER_SECONDS[mapped.code];
    if (retryAfter !== undefined) reply.header("retry-after", String(retryAfter));
    return reply.code(mapped.status).send(mapped.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new Beta9Error("ROUTE_NOT_FOUND", { method: request.method, url: request.url.split("?")[0]! });
    return reply.code(err.status).send(err.toBody());
  });
}
