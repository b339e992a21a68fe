/**
 * Web apps (`webApp()`: an endpoint whose stub config says `webApp: true`): every method and path
 * under an endpoint's URL with a slash reaches the app — `/endpoint/:name/…`, `/endpoint/:name/latest/…`,
 * `/endpoint/:name/vN/…`, `/endpoint/id/:stubId/…`, `/public/:stubId/…` and `/serve/:id/…`. The
 * app gets the path after that prefix, the query, the caller's headers (not the gateway token,
 * cookies or hop-by-hop ones; `x-forwarded-host`, `-proto`, `-prefix` and `-for` added) and the
 * body, streamed both ways (runner-answer.ts). A request counts as in flight for autoscaling until
 * its answer's body is done, as an endpoint call does.
 *
 * The segments `latest` and `vN` right after the name choose a version, so an app's own `/latest`
 * or `/v2` paths are reached through a versioned URL (`/endpoint/:name/latest/v2`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { Beta9Error, TASK_ID_HEADER, type Stub } from "@beta9/protocol";
import { forwardedHeaders } from "../sandboxes/proxy.js";
import { found, parseVersion, resolveDeployedStub, type GatewayContext } from "./common.js";
import { resolvePublicStub } from "./invoke.js";
import { forwardToPod, servedAs, upgradeToPod } from "./pods.js";
import { requestWebApp } from "../workloads/runner-client.js";
import { callError, relayStream } from "./runner-answer.js";
import { upgradeOf, type UpgradedClient } from "./websocket.js";
import { holdSocket, quotasOf, refuseOverCount, tokenOf, upgradeToStub } from "./websocket-routes.js";
import { forward, forwardUpgrade, peersFor } from "./forward.js";

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
/** The exact URL (no slash) answers every method but POST here; POST is the endpoint call (invoke.ts). */
const EXACT_METHODS = METHODS.filter((m) => m !== "POST");
const VERSION_SEGMENT = /^(latest|v\d+)$/;

type Params = Record<string, string>;

/** Where a web app is mounted: its URL without the slash, and how a request there finds its stub. */
export interface WebAppMount {
  url: string;
  access: "read" | "public";
  stub: (request: FastifyRequest<{ Params: Params }>) => Promise<Stub> | Stub;
  /** Register the exact URL for methods other than POST (a redirect to the app's root). */
  exact?: boolean;
}

/** The part of the raw URL after the mount's `depth` segments (query included) and the prefix itself. */
export function splitAppPath(rawUrl: string, depth: number): { prefix: string; path: string } {
  const q = rawUrl.indexOf("?");
  const parts = (q === -1 ? rawUrl : rawUrl.slice(0, q)).split("/");
  return { prefix: parts.slice(0, depth + 1).join("/"), path: `/${parts.slice(depth + 1).join("/")}${q === -1 ? "" : rawUrl.slice(q)}` };
}

function notWebApp(stub: Stub): Beta9Error {
  if (stub.config.realtime === true) return new Beta9Error("CONFLICT", { reason: `${stub.name} is a realtime endpoint: connect to its URL with a WebSocket` });
  if (!stub.type.startsWith("endpoint/")) return new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not a web app; call it through its own route` });
  return new Beta9Error("CONFLICT", { reason: `${stub.name} is an endpoint, not a web app: POST its URL (no path after the name) with a JSON body` });
}

function appRoot(request: FastifyRequest, reply: FastifyReply, prefix: string): FastifyReply {
  const q = request.url.indexOf("?");
  return reply.redirect(`${prefix}/${q === -1 ? "" : request.url.slice(q)}`, 308);
}

/** Sends one request to the app in a container of `stub` and relays its Response. */
async function forwardToApp(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, prefix: string, path: string, isPublic: boolean) {
  const slot = await ctx.autoscaler.acquire(stub);
  const taskId = randomUUID();
  let streaming = false;
  try {
    const headers = forwardedHeaders(request.headers, request.ip);
    if (request.headers.host !== undefined) headers["x-forwarded-host"] = request.headers.host;
    headers["x-forwarded-proto"] = request.protocol;
    headers["x-forwarded-prefix"] = prefix;
    // Token-protected apps never see the gateway token; a public app gets the caller's own header,
    // unless it is a beta9 token (a client that sends its token to this host would hand it over).
    const authorization = request.headers.authorization;
    const appAuthorization = isPublic && authorization !== undefined && !/^\s*Bearer\s+b9_/i.test(authorization) ? authorization : undefined;
    // Time to the app's response headers is bounded by the task timeout, as is each gap in its body.
    const outcome = await requestWebApp(slot, {
      path, method: request.method as Dispatcher.HttpMethod, headers, body: (request.body as Readable | undefined) ?? null,
      taskId, timeoutMs: Math.max(1, stub.config.taskPolicy.timeout) * 1000, ...(appAuthorization !== undefined && { appAuthorization }),
    });
    if (outcome.kind === "stream") {
      streaming = true;
      return relayStream(reply, outcome.res, slot.release, taskId);
    }
    // An exchange that failed has no answer to carry the task id; a refusal does.
    if (outcome.kind === "inputInvalid" || outcome.kind === "handlerError") reply.header(TASK_ID_HEADER, taskId);
    throw callError(outcome, { name: stub.name, seconds: stub.config.taskPolicy.timeout, taskId, stack: !isPublic });
  } finally {
    if (!streaming) slot.release();
  }
}

/**
 * An upgrade for a stub no worker here can run, sent on to a gateway that has one; false when
 * there is none (or it is already a forwarded one): served here then.
 */
async function upgradeElsewhere(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, client: UpgradedClient, isPublic: boolean): Promise<boolean> {
  const [peer] = await peersFor(ctx, stub, request);
  if (!peer) return false;
  const release = holdSocket(ctx, stub.workspaceId, isPublic ? `stub:${stub.id}` : undefined);
  if (!release) {
    refuseOverCount(ctx, client, reply, isPublic);
    return true;
  }
  reply.hijack();
  forwardUpgrade(client, request, peer, ctx, { maxMessageBytes: quotasOf(ctx).webSocketMessageBytes, ...tokenOf(request), onClose: release });
  return true;
}

/**
 * Registers the mounts' routes in a scope of their own, where bodies of any type pass through
 * untouched (never parsed, never held whole).
 */
export function registerWebApps(app: FastifyInstance, ctx: GatewayContext, mounts: WebAppMount[]): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
    for (const mount of mounts) {
      const depth = mount.url.split("/").length - 1;
      const isPublic = mount.access === "public";
      // A serve session's container is the one its gateway pinned: never another gateway's.
      const forwardable = !mount.url.startsWith("/serve");
      const upgrade = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply, exact: boolean, client: UpgradedClient) => {
        let { prefix, path } = splitAppPath(request.url, depth);
        const q = request.url.indexOf("?");
        const query = q === -1 ? "" : request.url.slice(q);
        if (exact) path = `/${query}`;
        const segment = request.params["*"] ?? "";
        // `/endpoint/:name/latest` and `/endpoint/:name/v2` name a version, as for HTTP.
        if (!exact && mount.url === "/endpoint/:name" && VERSION_SEGMENT.test(segment)) {
          const stub = await resolveDeployedStub(ctx.store, request.auth.workspaceId, request.params.name!, segment === "latest" ? "latest" : parseVersion(segment.slice(1)));
          if (forwardable && (await upgradeElsewhere(ctx, stub, request, reply, client, isPublic))) return;
          return upgradeToStub(ctx, stub, request, reply, client, { prefix: `${prefix}/${segment}`, path: `/${query}`, isPublic: mount.access === "public" });
        }
        const stub = await mount.stub(request);
        if (forwardable && (await upgradeElsewhere(ctx, stub, request, reply, client, isPublic))) return;
        if (servedAs(mount.url, stub) === "pod") return upgradeToPod(ctx, stub, request, reply, client, { prefix, path, isPublic: mount.access === "public" });
        return upgradeToStub(ctx, stub, request, reply, client, { prefix, path, isPublic: mount.access === "public" });
      };
      const serve = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply, exact: boolean) => {
        // WebSocket upgrades (websocket.ts routes them here like any request) go to realtime endpoints and web apps.
        const client = upgradeOf(request);
        if (client) return upgrade(request, reply, exact, client);
        const stub = await mount.stub(request);
        // Pods share these mounts (pods.ts): same path, query, header and body treatment.
        const pod = servedAs(mount.url, stub) === "pod";
        if (!pod && (!stub.type.startsWith("endpoint/") || stub.config.webApp !== true)) throw notWebApp(stub);
        const { prefix, path } = splitAppPath(request.url, depth);
        if (exact) return appRoot(request, reply, prefix);
        // `/endpoint/:name/latest` and `/endpoint/:name/v2` name a version: the app's root is below them.
        if ((mount.url === "/endpoint/:name" || mount.url === "/pod/:name") && VERSION_SEGMENT.test(request.params["*"] ?? "")) return appRoot(request, reply, `${prefix}/${request.params["*"]}`);
        // No worker here for it, and another gateway on the store has one (forward.ts).
        if (forwardable) {
          const peers = await peersFor(ctx, stub, request);
          if (peers.length > 0 && (await forward(request, reply, peers, ctx, stub, { raw: true }))) return reply;
        }
        if (pod) return forwardToPod(ctx, stub, request, reply, prefix, path, isPublic);
        return forwardToApp(ctx, stub, request, reply, prefix, path, isPublic);
      };
      const schema = { tags: ["invoke"], summary: "A web app's routes: any method and path below its URL", hide: true };
      scope.route<{ Params: Params }>({
        method: [...METHODS], url: `${mount.url}/*`, config: { access: mount.access }, schema,
        handler: (request, reply) => serve(request, reply, false),
      });
      if (mount.exact) {
        scope.route<{ Params: Params }>({
          // A pod's exact URL takes POST too (it has no JSON call of its own there).
          method: mount.url.startsWith("/pod/") ? [...METHODS] : [...EXACT_METHODS], url: mount.url, config: { access: mount.access }, schema,
          handler: (request, reply) => serve(request, reply, true),
        });
      }
    }
  });
}

/** The deployment and public mounts (serve sessions mount theirs in serve.ts). */
export function webAppRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store } = ctx;
  const deployed = (request: FastifyRequest<{ Params: Params }>, version: number | "latest") =>
    resolveDeployedStub(store, request.auth.workspaceId, request.params.name!, version);
  registerWebApps(app, ctx, [
    { url: "/endpoint/:name", access: "read", exact: true, stub: (request) => deployed(request, "latest") },
    { url: "/endpoint/:name/latest", access: "read", stub: (request) => deployed(request, "latest") },
    { url: "/endpoint/:name/v:version(^\\d+$)", access: "read", stub: (request) => deployed(request, parseVersion(request.params.version!)) },
    {
      url: "/endpoint/id/:stubId", access: "read", exact: true,
      stub: async (request) => found(await store.stubs.get(request.auth.workspaceId, request.params.stubId!), "stub", request.params.stubId!),
    },
    { url: "/public/:stubId", access: "public", exact: true, stub: (request) => resolvePublicStub(store, request.params.stubId!) },
  ]);
}
