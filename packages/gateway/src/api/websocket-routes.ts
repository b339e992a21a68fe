/**
 * WebSockets to workloads: an upgrade to a realtime endpoint's URL (`realtime()`: any path below
 * it too) or to a web app's routes reaches a container of the stub, on the URLs HTTP calls use
 * and with the same auth (webapp.ts routes them here). An open socket holds a container slot for
 * its whole life, as a request in flight does: it counts as concurrency for scaling and keeps its
 * container from being reaped after keep-warm; closing it releases the slot. Sockets per
 * workspace and message sizes are bounded by the workspace quotas (1013 and 1009 close codes);
 * anonymous sockets to public targets have a budget of their own (per target, and gateway-wide).
 * A socket opened with a token is cut when the token is revoked.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { randomUUID } from "node:crypto";
import { Beta9Error, type Stub } from "@beta9/protocol";
import { DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import { forwardedHeaders } from "../sandboxes/proxy.js";
import { upgradeTarget } from "../workloads/runner-client.js";
import type { GatewayContext } from "./common.js";
import { CLOSE_TRY_AGAIN_LATER, proxyWebSocket, refuseWebSocket, type UpgradedClient } from "./websocket.js";

/** Open sockets per workspace, one table per gateway (keyed by its store). */
const openSockets = new WeakMap<object, Map<string, number>>();
/** Anonymous sockets (public targets, no token) per target, and in all under the key "": one table per gateway. */
const anonymousSockets = new WeakMap<object, Map<string, number>>();
/**
 * Anonymous sockets the whole gateway holds at most (each is two descriptors: client and target).
 * Per public target the bound is the workspace quota's number, counted apart from the workspace's own.
 */
export const MAX_ANONYMOUS_SOCKETS = 4096;

function take(table: Map<string, number>, key: string): () => void {
  table.set(key, (table.get(key) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const now = (table.get(key) ?? 1) - 1;
    if (now <= 0) table.delete(key);
    else table.set(key, now);
  };
}

/**
 * Counts a socket against its workspace: a release function, or undefined when the workspace
 * already has all it may have. Shared by every WebSocket route (sandbox ports and pods too).
 * `anonymousTarget` (a public stub or port, reached without a token): the socket counts against
 * that target's own anonymous budget and the gateway's, never the workspace's, so strangers
 * cannot use up the sockets its owner's clients need.
 */
export function holdSocket(ctx: Pick<GatewayContext, "store" | "quotas">, workspaceId: string, anonymousTarget?: string): (() => void) | undefined {
  if (anonymousTarget !== undefined) {
    let anon = anonymousSockets.get(ctx.store);
    if (!anon) anonymousSockets.set(ctx.store, (anon = new Map()));
    const key = `${workspaceId}/${anonymousTarget}`;
    if ((anon.get(key) ?? 0) >= quotasOf(ctx).webSockets || (anon.get("") ?? 0) >= MAX_ANONYMOUS_SOCKETS) return undefined;
    const target = take(anon, key);
    const all = take(anon, "");
    return () => {
      target();
      all();
    };
  }
  let table = openSockets.get(ctx.store);
  if (!table) openSockets.set(ctx.store, (table = new Map()));
  if ((table.get(workspaceId) ?? 0) >= quotasOf(ctx).webSockets) return undefined;
  return take(table, workspaceId);
}

/** Anonymous sockets open now to a public target of a workspace (tests, metrics). */
export function anonymousSocketCount(ctx: Pick<GatewayContext, "store">, workspaceId: string, target: string): number {
  return anonymousSockets.get(ctx.store)?.get(`${workspaceId}/${target}`) ?? 0;
}

/** Sockets open now in a workspace (tests, metrics). */
export function openSocketCount(ctx: Pick<GatewayContext, "store">, workspaceId: string): number {
  return openSockets.get(ctx.store)?.get(workspaceId) ?? 0;
}

/** The token behind a request, for `proxyWebSocket`'s `tokenId` (none on a public route called without one). */
export const tokenOf = (request: FastifyRequest): { tokenId?: string } => {
  const id = (request as { auth?: { id: string } | null }).auth?.id;
  return id === undefined ? {} : { tokenId: id };
};

export const quotasOf = (ctx: Pick<GatewayContext, "quotas">): WorkspaceQuotas => ctx.quotas ?? DEFAULT_QUOTAS;

/** A socket over the workspace's count: upgraded only to be closed with 1013 and why. */
export function refuseOverCount(ctx: Pick<GatewayContext, "quotas">, client: UpgradedClient, reply: FastifyReply, anonymous = false): void {
  reply.hijack();
  refuseWebSocket(client, CLOSE_TRY_AGAIN_LATER, anonymous
    ? "this public target has all the anonymous WebSockets it may have open; try again later"
    : `this workspace has ${quotasOf(ctx).webSockets} WebSockets open, the most it may have; close some`);
}

/** Why a stub takes no WebSocket (a 400 before any upgrade), or undefined when it takes them. */
function unsupported(stub: Stub): Beta9Error | undefined {
  if (stub.type.startsWith("endpoint/") && (stub.config.realtime === true || stub.config.webApp === true)) return undefined;
  const reason = stub.type.startsWith("endpoint/")
    ? "it is a JSON endpoint; declare it with realtime() for a socket handler, or webApp() and upgradeWebSocket(request)"
    : `it is a ${stub.type}; only realtime() endpoints and web apps take WebSockets`;
  return new Beta9Error("WEBSOCKET_NOT_SUPPORTED", { name: stub.name, reason });
}

export interface StubUpgrade {
  /** Path and query below the stub's URL ("/" for the URL itself). */
  path: string;
  /** The stub's URL as the caller used it (x-forwarded-prefix). */
  prefix: string;
  isPublic: boolean;
}

/**
 * Proxies an upgrade to a container of `stub`: to the realtime handler or the web app. Errors
 * before the socket is taken (not a WebSocket workload, no container within the wait) are
 * thrown and answered as HTTP.
 */
export async function upgradeToStub(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, client: UpgradedClient, where: StubUpgrade): Promise<void> {
  const refusal = unsupported(stub);
  if (refusal) throw refusal;
  const release = holdSocket(ctx, stub.workspaceId, where.isPublic ? `stub:${stub.id}` : undefined);
  if (!release) return refuseOverCount(ctx, client, reply, where.isPublic);
  let slot;
  try {
    slot = await ctx.autoscaler.acquire(stub);
  } catch (err) {
    release();
    throw err;
  }
  reply.hijack();
  const headers = forwardedHeaders(request.headers, request.ip);
  if (request.headers.host !== undefined) headers["x-forwarded-host"] = request.headers.host;
  headers["x-forwarded-proto"] = request.protocol;
  headers["x-forwarded-prefix"] = where.prefix;
  const authorization = request.headers.authorization;
  // A public app may do its own auth: it gets the caller's header, unless that is a beta9 token.
  const appAuthorization = where.isPublic && authorization !== undefined && !/^\s*Bearer\s+b9_/i.test(authorization) ? authorization : undefined;
  const held = slot;
  proxyWebSocket(client, upgradeTarget(slot, stub.config.webApp === true ? "web" : "realtime", where.path, headers, randomUUID(), appAuthorization), {
    maxMessageBytes: quotasOf(ctx).webSocketMessageBytes,
    ...tokenOf(request),
    onClose: () => {
      held.release();
      release();
    },
  });
}
