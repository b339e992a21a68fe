/**
 * Shells into running containers and sandboxes (shell/sessions.ts has the whole path). POST
 * …/container/:id/shell or …/sandbox/:id/shell checks everything a caller can get wrong and
 * answers a ticket; `GET ${SHELL_SOCKET_PATH}/:ticket` as a WebSocket (websocket.ts routes upgrades
 * here, through the auth hook) is the session. Both need a write token: a shell changes things.
 */
import type { FastifyInstance } from "fastify";
import { WebSocketServer } from "ws";
import { Type } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, IdParamsSchema, MAX_SHELL_FRAME, SHELL_SOCKET_PATH, ShellOpenBodySchema, ShellTicketSchema, type ShellOpenBody,
} from "@beta9/protocol";
import { found, responses, type GatewayContext } from "./common.js";
import { upgradeOf } from "./websocket.js";

type IdParams = { id: string };

export function shellRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, scheduler } = ctx;
  // One frame per client message: a little over the largest frame.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_SHELL_FRAME + 64, perMessageDeflate: false });
  const shells = () => {
    if (!ctx.shells) throw new Beta9Error("UNAVAILABLE", { reason: "this gateway serves no shells (they need its worker connections: beta9 gateway or beta9 up)" });
    return ctx.shells;
  };
  const running = (containerId: string, workspaceId: string, kind: string, ref: string) => {
    const c = found(scheduler.containers.get(containerId), kind, ref);
    if (c.workspaceId !== workspaceId) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind, id: ref });
    if (c.state !== "RUNNING" || c.workerId === null) throw new Beta9Error("CONTAINER_NOT_RUNNING", { id: containerId, state: c.state });
    return c;
  };
  const schema = (summary: string) => ({
    tags: ["shell"], summary, params: IdParamsSchema, body: ShellOpenBodySchema, response: responses({ 201: ShellTicketSchema }),
  });

  app.post<{ Params: IdParams; Body: ShellOpenBody | undefined }>(`${API_PREFIX}/container/:id/shell`, {
    config: { access: "write" },
    schema: schema(`Open a shell in a running container: answers a ticket for the WebSocket ${SHELL_SOCKET_PATH}/:ticket (same token, within 30 s)`),
  }, async (request, reply) => {
    const c = running(request.params.id, request.auth.workspaceId, "container", request.params.id);
    return reply.code(201).send(shells().ticket(request.auth, c.id, request.body ?? {}));
  });

  app.post<{ Params: IdParams; Body: ShellOpenBody | undefined }>(`${API_PREFIX}/sandbox/:id/shell`, {
    config: { access: "write" },
    schema: schema(`Open a shell in a sandbox (waits while it starts): answers a ticket for the WebSocket ${SHELL_SOCKET_PATH}/:ticket`),
  }, async (request, reply) => {
    const record = found(await store.sandboxes.get(request.auth.workspaceId, request.params.id), "sandbox", request.params.id);
    if (record.state === "TERMINATED") throw new Beta9Error("SANDBOX_NOT_RUNNING", { id: record.id, state: record.state, reason: record.reason ?? "ended" });
    await ctx.sandboxes?.origin(record); // bounded wait for a sandbox still starting
    const c = running(record.containerId, request.auth.workspaceId, "sandbox", request.params.id);
    return reply.code(201).send(shells().ticket(request.auth, c.id, { cwd: "/workspace", ...request.body }));
  });

  app.get<{ Params: { ticket: string } }>(`${SHELL_SOCKET_PATH}/:ticket`, {
    config: { access: "write" },
    schema: { tags: ["shell"], summary: "The shell session (a WebSocket of shell frames; see shell-protocol.ts)", params: Type.Object({ ticket: Type.String({ maxLength: 64 }) }), hide: true },
  }, async (request, reply) => {
    const client = upgradeOf(request);
    if (!client) throw new Beta9Error("BAD_REQUEST", { reason: `open ${SHELL_SOCKET_PATH}/:ticket as a WebSocket, after POST ${API_PREFIX}/container/:id/shell` });
    const hub = shells();
    const ticket = found(hub.take(request.params.ticket, request.auth.id), "shell ticket", "(expired, used, or another token's)");
    const workerId = hub.workerOf(ticket);
    reply.hijack();
    wss.handleUpgrade(request.raw, client.socket, client.head, (ws) => hub.start(ws, ticket, workerId));
  });
}
