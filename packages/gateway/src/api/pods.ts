/**
 * Pods (`beta9 pod deploy`, `Pod()`): any image serving its own HTTP port, deployed under a name
 * and reached at `/pod/:name/…` (also `/pod/:name/latest/…`, `/pod/:name/vN/…`,
 * `/pod/id/:stubId/…`, and `/public/:stubId/…` for `authorized: false`). The mounts are the web
 * apps' (webapp.ts), so a pod gets the same treatment as a web app: the path after the prefix, the
 * query, the caller's headers (not the gateway token, cookies or hop-by-hop ones; x-forwarded-*
 * added) and the body, streamed both ways with backpressure. A pod's answer, whatever its status,
 * is the pod's own and reaches the caller as is (but cookies, on the API's origin: see proxy.ts).
 *
 * `POST /api/v1/deployment/:id/warm` starts a container of a deployment (when none runs) and
 * answers once one is ready: `beta9 pod deploy` waits on it, so a pod whose port never opens
 * fails the deploy with POD_NOT_READY and its container's last log lines.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { Type } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, IdParamsSchema, TASK_ID_HEADER, type Stub } from "@beta9/protocol";
import { forwardedHeaders, relayAll } from "../sandboxes/proxy.js";
import { podOf } from "../workloads/pod.js";
import { found, parseVersion, resolveDeployedStub, responses, type GatewayContext } from "./common.js";
import { forwardRequest } from "../workloads/runner-client.js";
import { callError } from "./runner-answer.js";
import { registerWebApps } from "./webapp.js";
import { proxyWebSocket, type UpgradedClient } from "./websocket.js";
import { holdSocket, quotasOf, refuseOverCount, tokenOf } from "./websocket-routes.js";

type Params = Record<string, string>;

/** What a mount serves a stub as: pod mounts only pods, endpoint mounts only web apps, `/public` either. */
export function servedAs(mountUrl: string, stub: Stub): "pod" | "app" {
  const pod = podOf(stub) !== undefined;
  if (mountUrl.startsWith("/pod/") && !pod) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not a pod; call it through its own route` });
  }
  if (mountUrl.startsWith("/endpoint/") && pod) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a pod; its URL is /pod/${stub.name}/` });
  }
  return pod ? "pod" : "app";
}

/** The caller's headers as a pod gets them: ours dropped, x-forwarded-* added, a public pod's own Authorization kept. */
function podHeaders(request: FastifyRequest, prefix: string, isPublic: boolean): Record<string, string> {
  const headers = forwardedHeaders(request.headers, request.ip);
  if (request.headers.host !== undefined) headers["x-forwarded-host"] = request.headers.host;
  headers["x-forwarded-proto"] = request.protocol;
  headers["x-forwarded-prefix"] = prefix;
  // A public pod may do its own auth: it gets the caller's header, unless that is a beta9 token.
  const authorization = request.headers.authorization;
  if (isPublic && authorization !== undefined && !/^\s*Bearer\s+b9_/i.test(authorization)) headers.authorization = authorization;
  return headers;
}

/**
 * A WebSocket upgrade to a pod (websocket.ts): the pod's server answers it on its port, with the
 * same path and headers an HTTP request gets. The open socket holds a slot of a container for its
 * whole life (scaling, keep-warm) and counts against the workspace's sockets.
 */
export async function upgradeToPod(
  ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, client: UpgradedClient, where: { prefix: string; path: string; isPublic: boolean },
): Promise<void> {
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
  const origin = new URL(slot.origin);
  const held = slot;
  proxyWebSocket(client, { host: origin.hostname, port: Number(origin.port), path: where.path, headers: podHeaders(request, where.prefix, where.isPublic) }, {
    maxMessageBytes: quotasOf(ctx).webSocketMessageBytes,
    ...tokenOf(request),
    onClose: () => {
      held.release();
      release();
    },
  });
}

/** Sends one request to the pod's server in a container of `stub` and relays its answer. */
export async function forwardToPod(
  ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, prefix: string, path: string, isPublic: boolean,
): Promise<FastifyReply> {
  const slot = await ctx.autoscaler.acquire(stub);
  const requestId = randomUUID();
  let relaying = false;
  try {
    const headers = podHeaders(request, prefix, isPublic);
    // Time to the pod's response headers is bounded by the pod's timeout, as is each gap in its body.
    const outcome = await forwardRequest(slot, {
      path, method: request.method as Dispatcher.HttpMethod, headers, body: (request.body as Readable | undefined) ?? null,
      timeoutMs: Math.max(1, stub.config.taskPolicy.timeout) * 1000,
    });
    if (outcome.kind !== "response") throw callError(outcome, { name: stub.name, seconds: stub.config.taskPolicy.timeout, taskId: requestId, stack: false });
    const res = outcome.res;
    // The request counts as in flight (autoscaling, scale-down) until its answer's body is done or dropped.
    relaying = true;
    res.body.once("close", slot.release);
    reply.header(TASK_ID_HEADER, requestId);
    try {
      return relayAll(reply, res);
    } catch (err) {
      res.body.on("error", () => undefined).destroy();
      throw err;
    }
  } finally {
    if (!relaying) slot.release();
  }
}

export function podRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, autoscaler } = ctx;
  const deployed = (request: FastifyRequest<{ Params: Params }>, version: number | "latest") =>
    resolveDeployedStub(store, request.auth.workspaceId, request.params.name!, version);
  registerWebApps(app, ctx, [
    { url: "/pod/:name", access: "read", exact: true, stub: (request) => deployed(request, "latest") },
    { url: "/pod/:name/latest", access: "read", stub: (request) => deployed(request, "latest") },
    { url: "/pod/:name/v:version(^\\d+$)", access: "read", stub: (request) => deployed(request, parseVersion(request.params.version!)) },
    {
      url: "/pod/id/:stubId", access: "read", exact: true,
      stub: async (request) => found(await store.stubs.get(request.auth.workspaceId, request.params.stubId!), "stub", request.params.stubId!),
    },
  ]);

  const Warmed = Type.Object({ deploymentId: Type.String(), stubId: Type.String(), containerId: Type.String() });
  app.post<{ Params: { id: string } }>(`${API_PREFIX}/deployment/:id/warm`, {
    config: { access: "write" },
    schema: {
      tags: ["deployment"], params: IdParamsSchema, response: responses({ 200: Warmed }),
      summary: "Start a container of the deployment when none runs, and answer once one is ready (a pod: once its port opens)",
    },
  }, async (request) => {
    const { workspaceId } = request.auth;
    const deployment = found(await store.deployments.get(workspaceId, request.params.id), "deployment", request.params.id);
    if (!deployment.active) throw new Beta9Error("DEPLOYMENT_STOPPED", { name: deployment.name, version: deployment.version, id: deployment.id });
    const stub = found(await store.stubs.get(workspaceId, deployment.stubId), "stub", deployment.stubId);
    if (!stub.type.startsWith("pod/") && !stub.type.startsWith("endpoint/")) {
      throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}: only pods and endpoints keep containers to warm` });
    }
    const slot = await autoscaler.acquire(stub);
    slot.release();
    return { deploymentId: deployment.id, stubId: stub.id, containerId: slot.containerId };
  });
}
