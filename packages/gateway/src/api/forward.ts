/**
 * Endpoint calls between gateways on a shared store. A call that reaches a gateway with no worker
 * for the stub's pool (behind a load balancer, say) is forwarded to a gateway that has one, as its
 * last heartbeat said (store peers): the same method, path, body and credentials, answered as that
 * gateway answers, streamed. A forwarded call carries FORWARDED_HEADER and is never forwarded
 * again (the receiving gateway serves it, or waits for capacity, itself). An unreachable peer
 * leaves the call to this gateway.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { request as undiciRequest, type Dispatcher } from "undici";
import type { Stub } from "@beta9/protocol";
import type { Peer } from "../store/types.js";
import type { GatewayContext } from "./common.js";

export const FORWARDED_HEADER = "x-beta9-forwarded-by";
/** Request headers a forwarded call keeps (the rest are this hop's). */
const REQUEST_HEADERS = ["authorization", "content-type", "accept", "accept-encoding", "user-agent", "x-request-id"];
/** Answer headers relayed back. */
const ANSWER_HEADERS = ["content-type", "content-encoding", "cache-control", "retry-after", "x-beta9-task-id", "x-request-id"];

/** The gateway to send this call to, or undefined to serve it here. */
export async function peerFor(ctx: Pick<GatewayContext, "store" | "scheduler">, stub: Stub, request: FastifyRequest): Promise<Peer | undefined> {
  const peers = ctx.store.peers;
  if (!peers || request.headers[FORWARDED_HEADER] !== undefined) return undefined;
  const pool = stub.config.pool;
  if (ctx.scheduler.hasWorkerFor({ pool, workspaceId: stub.workspaceId })) return undefined;
  const able = (await peers.list().catch(() => [])).filter((p) => (pool === null ? p.pools.length > 0 : p.pools.includes(pool)));
  return able[Math.floor(Math.random() * able.length)];
}

/**
 * Sends the call to `peer` and relays its answer; false when the peer could not be reached (the
 * caller then serves the call itself). `self`: this gateway's id, named in FORWARDED_HEADER.
 */
export async function forward(request: FastifyRequest, reply: FastifyReply, peer: Peer, self: string, dispatcher?: Dispatcher): Promise<boolean> {
  const headers: Record<string, string> = { [FORWARDED_HEADER]: self };
  for (const name of REQUEST_HEADERS) {
    const value = request.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  let res: Dispatcher.ResponseData;
  try {
    res = await undiciRequest(new URL(request.url, peer.url), {
      method: request.method as Dispatcher.HttpMethod,
      headers,
      ...(request.body !== undefined && { body: typeof request.body === "string" ? request.body : JSON.stringify(request.body) }),
      // As long as a call here may take: the peer bounds it (the stub's timeout) and answers.
      headersTimeout: 0,
      bodyTimeout: 0,
      ...(dispatcher && { dispatcher }),
    });
  } catch (err) {
    request.log.warn({ err, peer: peer.url }, "could not forward the call to another gateway; serving it here");
    return false;
  }
  reply.code(res.statusCode);
  for (const name of ANSWER_HEADERS) {
    const value = res.headers[name];
    if (value !== undefined) reply.header(name, value);
  }
  reply.header(FORWARDED_HEADER, peer.id);
  // The caller leaving ends the peer's answer too.
  reply.raw.once("close", () => res.body.destroy());
  await reply.send(res.body);
  return true;
}
