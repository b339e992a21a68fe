/**
 * `beta9 serve` over HTTP: start a session on a `<kind>/serve` stub, heartbeat it, swap its stub
 * on every hot reload, end it; and `POST /serve/:id` calls whatever the session serves now.
 */
import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { API_PREFIX, IdParamsSchema } from "@beta9/protocol";
import { ServeSessions } from "../workloads/serve-sessions.js";
import { found, responses, type GatewayContext } from "./common.js";
import { invokeAny } from "./invoke.js";
import { registerWebApps } from "./webapp.js";

const ServeSessionSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  stubId: Type.String({ description: "the stub it serves now (changes on every reload)" }),
  kind: Type.String(),
  createdAt: Type.String(),
  containerId: Type.Union([Type.String(), Type.Null()]),
  ready: Type.Boolean(),
  reloads: Type.Integer(),
  url: Type.String({ description: "path to call it: POST it with the input as JSON" }),
});
const StubBodySchema = Type.Object({ stubId: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
type IdParams = Static<typeof IdParamsSchema>;
type StubBody = Static<typeof StubBodySchema>;

export function serveRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  // BETA9_SERVE_HEARTBEAT_TIMEOUT_MS: how long a session outlives its last heartbeat (default 15 s; the CLI sends one every 3 s).
  const timeout = Number(process.env.BETA9_SERVE_HEARTBEAT_TIMEOUT_MS);
  const sessions = new ServeSessions({ autoscaler: ctx.autoscaler, logger: app.log as never, ...(timeout > 0 && { heartbeatTimeoutMs: timeout }) });
  app.addHook("onClose", async () => sessions.close());
  const tags = ["serve"];
  const withUrl = <T extends { id: string }>(s: T) => ({ ...s, url: `/serve/${s.id}` });
  const stubOf = async (workspaceId: string, stubId: string) => found(await ctx.store.stubs.get(workspaceId, stubId), "stub", stubId);

  app.post<{ Body: StubBody }>(`${API_PREFIX}/serve`, {
    config: { access: "write" },
    schema: { tags, summary: "Start a serve session on a <kind>/serve stub: one container, a stable URL, ends when heartbeats stop", body: StubBodySchema, response: responses({ 201: ServeSessionSchema }) },
  }, async (request, reply) => reply.code(201).send(withUrl(sessions.create(await stubOf(request.auth.workspaceId, request.body.stubId)))));

  app.get<{ Params: IdParams }>(`${API_PREFIX}/serve/:id`, {
    config: { access: "read" },
    schema: { tags, summary: "A serve session and the container serving it", params: IdParamsSchema, response: responses({ 200: ServeSessionSchema }) },
  }, async (request) => withUrl(found(sessions.get(request.auth.workspaceId, request.params.id), "serve session", request.params.id)));

  app.post<{ Params: IdParams }>(`${API_PREFIX}/serve/:id/heartbeat`, {
    config: { access: "write" },
    schema: { tags, summary: "Keep the session alive (the CLI sends one every few seconds)", params: IdParamsSchema, response: responses({ 200: ServeSessionSchema }) },
  }, async (request) => withUrl(found(sessions.heartbeat(request.auth.workspaceId, request.params.id), "serve session", request.params.id)));

  app.put<{ Params: IdParams; Body: StubBody }>(`${API_PREFIX}/serve/:id/stub`, {
    config: { access: "write" },
    schema: { tags, summary: "Hot reload: answers once the new stub's container serves and the old one is stopping", params: IdParamsSchema, body: StubBodySchema, response: responses({ 200: ServeSessionSchema }) },
  }, async (request) => {
    const { workspaceId } = request.auth;
    found(sessions.get(workspaceId, request.params.id), "serve session", request.params.id);
    const stub = await stubOf(workspaceId, request.body.stubId);
    return withUrl(found(await sessions.replace(workspaceId, request.params.id, stub), "serve session", request.params.id));
  });

  app.delete<{ Params: IdParams }>(`${API_PREFIX}/serve/:id`, {
    config: { access: "write" },
    schema: { tags, summary: "End the session: its container stops", params: IdParamsSchema },
  }, async (request, reply) => {
    found(sessions.endInWorkspace(request.auth.workspaceId, request.params.id) || undefined, "serve session", request.params.id);
    return reply.code(204).send();
  });

  app.post<{ Params: IdParams }>("/serve/:id", {
    config: { access: "read" }, bodyLimit: 32 * 1024 * 1024,
    schema: { tags: ["invoke"], summary: "Call what a serve session serves (endpoint answer, task id, or function result)", params: IdParamsSchema },
  }, async (request, reply) => invokeAny(ctx, found(sessions.stubOf(request.auth.workspaceId, request.params.id), "serve session", request.params.id), request, reply));

  // A web app served this way answers under /serve/:id/ (webapp.ts).
  registerWebApps(app, ctx, [{
    url: "/serve/:id", access: "read", exact: true,
    stub: (request) => found(sessions.stubOf(request.auth.workspaceId, request.params.id!), "serve session", request.params.id!),
  }]);
}
