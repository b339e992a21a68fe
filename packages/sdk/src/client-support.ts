/** The client's errors (every failed call is an ApiError with the gateway's stable code) and small helpers. */
import { formatErrorMessage, parseErrorBody } from "@beta9/protocol";
import type { Query } from "./client.js";

/**
 * A failed API call. `code` is the gateway's stable error code when it sent one, "HTTP_<status>"
 * when the body was not an error body, and "UNREACHABLE" (status 0) when no response came at all.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  /** The answer's `Retry-After`, in milliseconds, when it sent one (a 429 QUEUE_FULL does). */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, code: string, message: string, details?: unknown, retryAfterMs?: number) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterMs = retryAfterMs;
  }
}

/** `Retry-After` as milliseconds: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function toApiError(status: number, method: string, path: string, bytes: Buffer, headers: Record<string, string | string[] | undefined> = {}): ApiError {
  const retryAfterMs = parseRetryAfter(headers["retry-after"]);
  const error = parseErrorBody(status, bytes);
  if (error.structured) return new ApiError(status, error.code, error.message, error.details, retryAfterMs);
  // Not an error body: a proxy in between, or a HEAD response (which has no body by definition).
  const text = error.message.slice(0, 200);
  return new ApiError(status, error.code, `${method} ${path} answered ${status}${text ? `: ${text}` : ""}`, undefined, retryAfterMs);
}

/** A 404 from an invocation route by name means the workload is not deployed (or stopped): say how to fix it. */
export async function notDeployed<T>(call: Promise<T>, kind: string, name: string): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && err.code === "RESOURCE_NOT_FOUND") {
      const exportName = name.replace(/[^A-Za-z0-9_$]+(.)?/g, (_, c: string | undefined) => (c ?? "").toUpperCase());
      throw new ApiError(404, "WORKLOAD_NOT_DEPLOYED", formatErrorMessage("WORKLOAD_NOT_DEPLOYED", { kind, name, export: exportName }), err.details);
    }
    throw err;
  }
}

/** What `POST /api/v1/serve` and its siblings answer. */
export type { ServeSession } from "@beta9/protocol";

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export function items<T>(list: { items: T[] }): T[] {
  return list.items;
}
