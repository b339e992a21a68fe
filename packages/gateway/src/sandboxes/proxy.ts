/**
 * Forwarding to a sandbox: the daemon's API and the ports a sandbox exposes. Bodies stream both
 * ways (a 100 MB upload or download is never held in memory), and the daemon's answer, errors
 * included (they already use the catalogue's codes), reaches the client unchanged.
 */
import type { FastifyReply } from "fastify";
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { Pool, request, type Dispatcher } from "undici";
import { Beta9Error } from "@beta9/protocol";

/** Headers that belong to one hop, never forwarded (RFC 9110 section 7.6.1). */
export const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host",
]);

export interface ForwardOptions {
  method: Dispatcher.HttpMethod;
  body?: string | Readable | null;
  headers?: Record<string, string>;
  /** For answers that come only when the work ends (exec streams, runCode): no timeout. */
  unbounded?: boolean;
  /** Aborts the upstream request (the client went away). */
  signal?: AbortSignal;
}

/** A URL on a sandbox's daemon and the secret the daemon expects. */
export interface DaemonTarget {
  url: string;
  secret: string | undefined;
}

/**
 * Kept-alive connections to sandbox daemons, one pool per sandbox origin. A sandbox's address is
 * reused by the next sandbox on its worker once it ends: a socket kept from the old one would
 * reach the new container's kernel, which resets it (ECONNRESET on the new sandbox's first call).
 * So the manager drops an origin's pool when its sandbox ends and before a new one is probed.
 */
const pools = new Map<string, Pool>();

export function daemonPool(origin: string): Pool {
  let pool = pools.get(origin);
  if (!pool) pools.set(origin, (pool = new Pool(origin, { keepAliveTimeout: 30_000 })));
  return pool;
}

/** Closes an origin's kept sockets (requests in flight on them fail: their sandbox is gone). */
export function dropDaemonPool(origin: string | null): void {
  const pool = origin === null ? undefined : pools.get(origin);
  if (!pool) return;
  pools.delete(origin!);
  void pool.destroy().catch(() => {});
}

export async function forward(target: DaemonTarget, options: ForwardOptions): Promise<Dispatcher.ResponseData> {
  const headers = { ...options.headers, ...(target.secret !== undefined && { authorization: `Bearer ${target.secret}` }) };
  try {
    return await request(target.url, {
      dispatcher: daemonPool(new URL(target.url).origin),
      method: options.method, body: options.body ?? null, headers, ...(options.signal && { signal: options.signal }),
      ...(options.unbounded ? { headersTimeout: 0, bodyTimeout: 0 } : { headersTimeout: 60_000, bodyTimeout: 300_000 }),
    });
  } catch (err) {
    throw new Beta9Error("UPSTREAM_FAILED", { reason: (err as Error).message });
  }
}

/** Sends the upstream answer as ours: status, content type and length, and the body as a stream. */
export function relay(reply: FastifyReply, res: Dispatcher.ResponseData): FastifyReply {
  reply.code(res.statusCode);
  for (const name of ["content-type", "content-length", "cache-control"]) {
    const value = res.headers[name];
    if (typeof value === "string") reply.header(name, value);
  }
  if (res.statusCode === 204) {
    res.body.resume();
    return reply.send();
  }
  return reply.send(res.body);
}

/**
 * Exposed ports are served from the API's own origin, so nothing a sandbox's server sends may act
 * on that origin: no cookies either way, no service worker scope, and the page runs as an opaque
 * origin (CSP sandbox without allow-same-origin): its scripts cannot read the origin's storage or
 * call the API with the browser's credentials.
 */
export const ORIGIN_BOUND_RESPONSE: ReadonlySet<string> = new Set(["set-cookie", "set-cookie2", "service-worker-allowed", "clear-site-data"]);
export const EXPOSED_PORT_CSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/** Request headers a sandbox's own server gets: the client's, without our token, cookies and hop headers. */
export function forwardedHeaders(headers: IncomingHttpHeaders, client: string, o: { keepCookies?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name === "authorization" || (name === "cookie" && !o.keepCookies)) continue;
    out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  out["x-forwarded-for"] = client;
  return out;
}

/**
 * Relays an exposed port's response headers but the hop-by-hop ones; on the API's origin also
 * without the origin-bound ones and under the sandboxing CSP (`ownOrigin`: the port's own host).
 */
export function relayAll(reply: FastifyReply, res: Dispatcher.ResponseData, o: { ownOrigin?: boolean } = {}): FastifyReply {
  reply.code(res.statusCode);
  const csp: string[] = [];
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (o.ownOrigin) {
      // Cookies stay on the port's own host: a Domain attribute would reach every sandbox (and more) under the sandbox host.
      reply.header(name, name === "set-cookie" ? [value].flat().map(hostOnlyCookie) : value);
      continue;
    }
    if (ORIGIN_BOUND_RESPONSE.has(name)) continue;
    if (name === "content-security-policy") csp.push(...(Array.isArray(value) ? value : [value])); // kept; ours is added (policies intersect)
    else reply.header(name, value);
  }
  if (!o.ownOrigin) reply.header("content-security-policy", [...csp, EXPOSED_PORT_CSP]);
  return reply.send(res.body);
}

/** A Set-Cookie value without its Domain attribute: the cookie is then the setting host's alone. */
export function hostOnlyCookie(cookie: string): string {
  return cookie.split(";").filter((part) => !/^\s*domain\s*=/i.test(part)).join(";");
}
