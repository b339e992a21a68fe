/**
 * Endpoint calls between gateways on a shared store. A call that reaches a gateway with no worker
 * for the stub's pool (behind a load balancer, say) is forwarded to a gateway that has one, as its
 * last heartbeat said (store peers): the same method, path, query, JSON body and credentials,
 * answered as that gateway answers, streamed. A forwarded call carries FORWARDED_HEADER and is
 * never forwarded again (the receiving gateway serves it, or waits for capacity, itself).
 *
 * Only the path and query come from the request: the destination is always the peer's advertised
 * origin (an absolute-form request line must not choose where the gateway sends a token). A peer
 * that cannot be connected to is skipped for the next; once the call was sent, a failure is a 502
 * (the handler may have run: it must not run again here).
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { Agent, request as undiciRequest, type Dispatcher } from "undici";
import { Beta9Error, type Stub } from "@beta9/protocol";
import { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import { HOP_BY_HOP, relayAll } from "../sandboxes/proxy.js";
import type { Peer } from "../store/types.js";
import type { GatewayContext } from "./common.js";
import { proxyWebSocket, type UpgradedClient } from "./websocket.js";

export const FORWARDED_HEADER = "x-beta9-forwarded-by";
/** Request headers a forwarded call keeps (the rest are this hop's). */
const REQUEST_HEADERS = ["authorization", "content-type", "accept", "accept-encoding", "user-agent", "x-request-id"];
/** Errors before a byte of the call was sent: another peer (or this gateway) may take it. */
const NOT_SENT = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT",
  // A peer's certificate refused: the handshake failed, nothing was sent.
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "CERT_UNTRUSTED",
]);
const notSent = (code: string): boolean => NOT_SENT.has(code) || code.startsWith("ERR_TLS_") || code.startsWith("ERR_SSL_");
const CONNECT_TIMEOUT_MS = 3000;
/** What a call may wait for a container before its handler starts (the pool's own bound is 120 s). */
const PLACEMENT_MS = 180_000;

/** What a forwarding gateway is: its id on the store, and the CA it trusts for its peers' https URLs. */
export type ForwardingGateway = Pick<GatewayContext, "store" | "peerCa">;

/** The system's CAs and the operator's peer CA (--peer-ca), as a TLS `ca` list. */
function peerCaList(gateway: ForwardingGateway): string[] | undefined {
  return gateway.peerCa === undefined ? undefined : [...rootCertificates, gateway.peerCa];
}

/** undici's pools, per peer CA, with a short connect timeout: a dead peer (still listed for 30 s) is skipped quickly. */
const agents = new Map<string, Agent>();
function agentFor(gateway: ForwardingGateway): Agent {
  const key = gateway.peerCa ?? "";
  let agent = agents.get(key);
  const ca = peerCaList(gateway);
  if (!agent) agents.set(key, (agent = new Agent({ connect: { timeout: CONNECT_TIMEOUT_MS, ...(ca && { ca }) } })));
  return agent;
}

/** The peers to send this call to, in the order to try, or [] to serve it here. */
export async function peersFor(ctx: Pick<GatewayContext, "store" | "scheduler">, stub: Stub, request: FastifyRequest): Promise<Peer[]> {
  const peers = ctx.store.peers;
  if (!peers || request.headers[FORWARDED_HEADER] !== undefined) return [];
  const pool = stub.config.pool;
  if (ctx.scheduler.hasWorkerFor({ pool, workspaceId: stub.workspaceId })) return [];
  const able = (await peers.list().catch(() => [])).filter((p) => (pool === null ? p.pools.length > 0 : p.pools.includes(pool)));
  // A random order spreads the calls; the rest are the fallbacks.
  return able.map((p) => [Math.random(), p] as const).sort((a, b) => a[0] - b[0]).map(([, p]) => p);
}

/** The peer's origin with the request's path and query, whatever the request line held. */
export function targetUrl(peerUrl: string, requestUrl: string): URL {
  const target = new URL(peerUrl);
  const asked = new URL(requestUrl, "http://placeholder.invalid");
  target.pathname = asked.pathname;
  target.search = asked.search;
  return target;
}

/** How a forwarded request is sent: a JSON call (an endpoint's input), or a web app's or pod's request as it came. */
export interface ForwardAs {
  /** Every end-to-end header (cookies, the app's own; the peer filters them as it would its own caller's) and the body streamed untouched. */
  raw?: boolean;
}

/**
 * Sends the call to the first of `peers` that takes it and relays its answer; false when none
 * could be connected to (the caller then serves the call itself). `gateway`: this one (its id on
 * the store, the CA it trusts for its peers).
 */
export async function forward(request: FastifyRequest, reply: FastifyReply, peers: readonly Peer[], gateway: ForwardingGateway, stub: Stub, as: ForwardAs = {}): Promise<boolean> {
  const headers = as.raw ? rawHeaders(request) : pickedHeaders(request);
  headers[FORWARDED_HEADER] = gateway.store.peers!.self;
  // The caller leaving ends the call on the peer too (the reply's close: the request's fires once its body is read).
  const abort = new AbortController();
  const gone = () => {
    if (!reply.raw.writableFinished) abort.abort();
  };
  reply.raw.once("close", gone);
  try {
    return await sendToFirst(request, reply, peers, headers, abort.signal, stub, as, agentFor(gateway));
  } finally {
    reply.raw.off("close", gone);
  }
}

function pickedHeaders(request: FastifyRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of REQUEST_HEADERS) {
    const value = request.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  return headers;
}

/** The caller's headers but the hop-by-hop ones; its Host kept, so the app sees the host it was called at. */
function rawHeaders(request: FastifyRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    // Expect: the peer answers the whole request (undici sends no 100-continue).
    if (value === undefined || (HOP_BY_HOP.has(name) && name !== "host") || name === FORWARDED_HEADER || name === "expect") continue;
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}

function bodyOf(request: FastifyRequest, as: ForwardAs): string | Readable | undefined {
  if (request.body === undefined || request.body === null) return undefined;
  if (as.raw && request.body instanceof Readable) return request.body;
  return JSON.stringify(request.body);
}

async function sendToFirst(
  request: FastifyRequest, reply: FastifyReply, peers: readonly Peer[], headers: Record<string, string>, signal: AbortSignal, stub: Stub, as: ForwardAs,
  dispatcher: Agent,
): Promise<boolean> {
  const timeoutMs = Math.max(1, stub.config.taskPolicy.timeout) * 1000;
  const body = bodyOf(request, as);
  for (const peer of peers) {
    // A streamed body is gone once undici tried a peer, even one that refused the connection:
    // a peer that does not answer its health check now is skipped before the body is handed over.
    if (body instanceof Readable && !(await answers(peer.url, dispatcher))) {
      request.log.warn({ peer: peer.url }, "another gateway does not answer its health check; trying the next");
      continue;
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await undiciRequest(targetUrl(peer.url, request.url), {
        method: request.method as Dispatcher.HttpMethod,
        headers,
        ...(body !== undefined && { body }),
        headersTimeout: PLACEMENT_MS + timeoutMs,
        bodyTimeout: timeoutMs + 60_000,
        signal,
        dispatcher,
      });
    } catch (err) {
      if (signal.aborted) return true; // the caller left: nothing to answer
      const code = (err as NodeJS.ErrnoException).code ?? "";
      // A streamed body cannot be sent again.
      if (notSent(code) && !(body instanceof Readable)) {
        request.log.warn({ err: code, peer: peer.url }, "could not reach another gateway to forward the call; trying the next");
        continue;
      }
      throw new Beta9Error("UPSTREAM_FAILED", { reason: `the gateway ${peer.id} that serves ${stub.name} did not answer (${code || (err as Error).message})` });
    }
    reply.header(FORWARDED_HEADER, peer.id);
    // The peer's answer, less hop-by-hop and origin-bound headers, under the sandboxing CSP (as a local stream).
    await relayAll(reply, res);
    return true;
  }
  return false;
}

/** Peers that answered their health check lately, by URL: when (ms). */
const healthy = new Map<string, number>();
const HEALTHY_FOR_MS = 2000;

/** Whether the peer answers GET /api/v1/health within the connect timeout (remembered for 2 s). */
async function answers(peerUrl: string, dispatcher: Agent): Promise<boolean> {
  const seen = healthy.get(peerUrl);
  if (seen !== undefined && Date.now() - seen < HEALTHY_FOR_MS) return true;
  const ok = await undiciRequest(new URL("/api/v1/health", peerUrl), { dispatcher, headersTimeout: CONNECT_TIMEOUT_MS, bodyTimeout: CONNECT_TIMEOUT_MS })
    .then(async (res) => (await res.body.dump(), res.statusCode === 200), () => false);
  if (ok) healthy.set(peerUrl, Date.now());
  else healthy.delete(peerUrl);
  if (healthy.size > 1000) healthy.clear();
  return ok;
}

/**
 * A WebSocket upgrade (realtime endpoint, web app, pod) sent on to the first of `peers`: the
 * caller's headers and credentials go with it, and the socket is relayed as any other
 * (websocket.ts), its messages bounded here too. `onClose` runs once both sides are closed.
 */
export function forwardUpgrade(
  client: UpgradedClient, request: FastifyRequest, peer: Peer, gateway: ForwardingGateway, options: { maxMessageBytes: number; tokenId?: string; onClose: () => void },
): void {
  const target = targetUrl(peer.url, request.url);
  const headers = rawHeaders(request);
  delete headers.host; // requestHead writes the peer's; the app's host goes as x-forwarded-host
  if (request.headers.host !== undefined) headers["x-forwarded-host"] = request.headers.host;
  headers[FORWARDED_HEADER] = gateway.store.peers!.self;
  const https = target.protocol === "https:";
  const ca = peerCaList(gateway);
  proxyWebSocket(client, {
    host: target.hostname.replace(/^\[|\]$/g, ""), port: Number(target.port) || (https ? 443 : 80), path: `${target.pathname}${target.search}`, headers,
    ...(https && { tls: ca ? { ca } : {} }),
  }, {
    // The peer answers 101 only once a container took the socket: a scale from zero included.
    maxMessageBytes: options.maxMessageBytes, onClose: options.onClose, handshakeTimeoutMs: PLACEMENT_MS,
    ...(options.tokenId !== undefined && { tokenId: options.tokenId }),
  });
}
