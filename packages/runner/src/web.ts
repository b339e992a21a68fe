/**
 * A web app's request as the app sees it: a Fetch API Request for the app's own path and query on
 * the caller's host (from x-forwarded-host), with the caller's method, headers and body (streamed,
 * never read here). The runner's own headers (its secret, the task id) are not the app's.
 */
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { TASK_ID_HEADER, TASK_RETRIES_HEADER, WEB_AUTHORIZATION_HEADER } from "./constants.js";

/** Headers of this hop or of the runner protocol, never handed to the app. */
const DROP = new Set([
  "authorization", "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer",
  WEB_AUTHORIZATION_HEADER, TASK_ID_HEADER, TASK_RETRIES_HEADER,
]);
/** A host[:port] as it may stand in a URL; anything else (a forged header) becomes localhost. */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

const first = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

/**
 * The Request for `appPath` (path and query after the web prefix, still percent-encoded): aborted
 * with `signal` (the caller left, or the invocation was cancelled).
 *
 * @example
 * webRequest(req, "/users/42?full=1", controller.signal).url; // "https://gateway.example/users/42?full=1"
 */
export function webRequest(req: IncomingMessage, appPath: string, signal: AbortSignal, o: { upgrade?: boolean } = {}): Request {
  const forwardedHost = first(req.headers["x-forwarded-host"]);
  const host = forwardedHost && HOST.test(forwardedHost) ? forwardedHost : "localhost";
  const proto = first(req.headers["x-forwarded-proto"]) === "https" ? "https" : "http";
  // Concatenated, not resolved against a base: a path like //evil.example/x stays a path.
  const url = `${proto}://${host}${appPath.startsWith("/") ? appPath : `/${appPath}`}`;
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROP.has(name)) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, value);
  }
  headers.set("host", host);
  // A WebSocket upgrade shows as one (Hono's upgradeWebSocket helpers look for these).
  if (o.upgrade) {
    headers.set("upgrade", "websocket");
    headers.set("connection", "Upgrade");
  }
  const callerAuthorization = first(req.headers[WEB_AUTHORIZATION_HEADER]);
  if (callerAuthorization !== undefined) headers.set("authorization", callerAuthorization);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(url, {
    method, headers, signal,
    ...(hasBody && { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" }),
  } as RequestInit);
}
