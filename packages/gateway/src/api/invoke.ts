/**
 * Invoking deployed endpoints: `POST /endpoint/:name[/latest|/v:N]` and `/endpoint/id/:stubId`.
 * The body is the handler's input; the answer is its result, or the stream the handler returned
 * (runner-answer.ts). Scales from zero: a request that finds no container waits (bounded) while
 * one starts. Web apps are served under these URLs with a slash (webapp.ts).
 *
 * `POST /public/:stubId` calls a deployed workload whose stub says `authorized: false` without a
 * token; for every other stub it answers 404 exactly as for an unknown id, so it reveals nothing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { randomUUID } from "node:crypto";
import { Beta9Error, TASK_ID_HEADER, type Stub } from "@beta9/protocol";
import { checkedInput, found, parseVersion, resolveDeployedStub, type GatewayContext } from "./common.js";
import { invokeEndpoint } from "../workloads/runner-client.js";
import { callError, relayStream } from "./runner-answer.js";
import { callFunction, putTask } from "./tasks.js";
import { forward, peersFor } from "./forward.js";

/** Inputs up to 32 MiB (model prompts, small images as base64). */
const INVOKE_BODY_LIMIT = 32 * 1024 * 1024;

/**
 * A web app's stub called without a path: its root is the URL with a slash (308 keeps the method
 * and body), since the app's routes live under it (webapp.ts).
 */
function toAppRoot(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const q = request.url.indexOf("?");
  return reply.redirect(q === -1 ? `${request.url}/` : `${request.url.slice(0, q)}/${request.url.slice(q)}`, 308);
}

async function invoke(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, options: { stack: boolean } = { stack: true }) {
  if (!stub.type.startsWith("endpoint/")) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not an endpoint; call it through its own route` });
  }
  if (stub.config.webApp) return toAppRoot(request, reply);
  if (stub.config.realtime) throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a realtime endpoint: connect to its URL with a WebSocket (GET with Upgrade: websocket), not POST` });
  request.workload = stub; // its per-workload series (metrics.ts)
  const input = checkedInput(stub, request.body);
  // No worker here for it, and another gateway on the store has one (forward.ts).
  const peers = await peersFor(ctx, stub, request);
  if (peers.length > 0 && (await forward(request, reply, peers, ctx, stub))) return reply;
  const slot = await ctx.autoscaler.acquire(stub);
  const taskId = randomUUID();
  // A streamed answer holds the slot until its body is done (runner-answer.ts).
  let streaming = false;
  try {
    const outcome = await invokeEndpoint(slot, { input, taskId, accept: request.headers.accept, timeoutMs: Math.max(1, stub.config.taskPolicy.timeout) * 1000 });
    if (outcome.kind === "stream") {
      streaming = true;
      return relayStream(reply, outcome.res, slot.release, taskId);
    }
    if (outcome.kind === "ok") return reply.header(TASK_ID_HEADER, taskId).type("application/json").send(outcome.result);
    // An exchange that failed has no answer to carry the task id; a refusal does.
    if (outcome.kind === "inputInvalid" || outcome.kind === "handlerError") reply.header(TASK_ID_HEADER, taskId);
    throw callError(outcome, { name: stub.name, seconds: stub.config.taskPolicy.timeout, taskId, stack: options.stack });
  } finally {
    if (!streaming) slot.release();
  }
}

/** Any workload's stub, whatever its kind: what `/public/:stubId` and serve sessions call. */
export async function invokeAny(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, options: { stack: boolean } = { stack: true }): Promise<unknown> {
  if (stub.type.startsWith("endpoint/")) return invoke(ctx, stub, request, reply, options);
  if (stub.type.startsWith("taskqueue/")) return putTask(ctx, stub, request.body);
  if (stub.type.startsWith("function/")) return callFunction(ctx, stub, request.body, reply, options);
  if (stub.type.startsWith("pod/")) return toAppRoot(request, reply); // a pod's routes live under its URL with a slash
  throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}: it runs on its schedule and takes no calls` });
}

/**
 * The stub behind `/public/:stubId`: an `authorized: false` stub with an active deployment. Any
 * other stub (authorized, never deployed, stopped, unknown) is a 404 that names only the id.
 */
export async function resolvePublicStub(store: GatewayContext["store"], stubId: string): Promise<Stub> {
  const stub = await store.stubs.getAny(stubId);
  const hidden = () => new Beta9Error("RESOURCE_NOT_FOUND", { kind: "public workload", id: stubId });
  if (!stub || stub.config.authorized !== false || !stub.type.endsWith("/deployment")) throw hidden();
  // Deployment lists are cached per workspace in the store, so this costs no query when warm.
  const active = await store.deployments.list(stub.workspaceId, { active: true, limit: 1000, offset: 0 });
  if (!active.some((d) => d.stubId === stub.id)) throw hidden();
  return stub;
}

export function invokeRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store } = ctx;
  const resolve = (workspaceId: string, name: string, version: number | "latest") => resolveDeployedStub(store, workspaceId, name, version);
  const options = { config: { access: "read" as const }, bodyLimit: INVOKE_BODY_LIMIT, schema: { tags: ["invoke"] } };

  app.post<{ Params: { name: string } }>("/endpoint/:name", { ...options, schema: { ...options.schema, summary: "Call the latest version of a deployed endpoint" } },
    async (request, reply) => invoke(ctx, await resolve(request.auth.workspaceId, request.params.name, "latest"), request, reply));
  app.post<{ Params: { name: string } }>("/endpoint/:name/latest", { ...options, schema: { ...options.schema, summary: "Call the latest version" } },
    async (request, reply) => invoke(ctx, await resolve(request.auth.workspaceId, request.params.name, "latest"), request, reply));
  app.post<{ Params: { name: string; version: string } }>("/endpoint/:name/v:version", { ...options, schema: { ...options.schema, summary: "Call one version" } },
    async (request, reply) => invoke(ctx, await resolve(request.auth.workspaceId, request.params.name, parseVersion(request.params.version)), request, reply));
  app.post<{ Params: { stubId: string } }>("/endpoint/id/:stubId", { ...options, schema: { ...options.schema, summary: "Call a stub by id" } },
    async (request, reply) => invoke(ctx, found(await store.stubs.get(request.auth.workspaceId, request.params.stubId), "stub", request.params.stubId), request, reply));
  app.post<{ Params: { stubId: string } }>("/public/:stubId", {
    config: { access: "public" }, bodyLimit: INVOKE_BODY_LIMIT,
    schema: { tags: ["invoke"], summary: "Call a deployed workload whose stub has authorized: false, without a token", security: [] },
  }, async (request, reply) => invokeAny(ctx, await resolvePublicStub(store, request.params.stubId), request, reply, { stack: false }));
}
