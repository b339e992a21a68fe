/** Workspaces (admin) and tokens (per workspace). */
import type { FastifyInstance } from "fastify";
import {
  API_PREFIX, Beta9Error, CreateTokenBodySchema, CreateWorkspaceBodySchema, IdParamsSchema, ListQuerySchema,
  TokenSchema, TokenWithKeySchema, WorkspaceSchema,
  type CreateTokenBody, type CreateWorkspaceBody, type TokenType,
} from "@beta9/protocol";
import { Type, type Static } from "@sinclair/typebox";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

/** Token types a caller may mint: workspace tokens mint their peers; the rest need an admin. */
const mintableBy: Record<TokenType, readonly TokenType[]> = {
  admin: ["admin"],
  workspace: ["admin", "workspace"],
  restricted: ["admin", "workspace"],
  worker: ["admin"],
  machine: ["admin"],
};

type ListQuery = Static<typeof ListQuerySchema>;
type IdParams = Static<typeof IdParamsSchema>;

export function workspaceRoutes(app: FastifyInstance, { store }: GatewayContext): void {
  app.post<{ Body: CreateWorkspaceBody }>(`${API_PREFIX}/workspace`, {
    config: { access: "admin" },
    schema: {
      tags: ["workspace"], summary: "Create a workspace and its first token", body: CreateWorkspaceBodySchema,
      response: responses({ 201: Type.Object({ workspace: WorkspaceSchema, token: TokenWithKeySchema }) }),
    },
  }, async (request, reply) => reply.code(201).send(await store.workspaces.create(request.body.name, "workspace")));

  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/workspace`, {
    config: { access: "admin" },
    schema: { tags: ["workspace"], summary: "List all workspaces", querystring: ListQuerySchema, response: responses({ 200: Items(WorkspaceSchema) }) },
  }, async (request) => ({ items: await store.workspaces.list(toPage(request.query)) }));

  app.get(`${API_PREFIX}/workspace/current`, {
    config: { access: "read" },
    schema: { tags: ["workspace"], summary: "The token's own workspace", response: responses({ 200: WorkspaceSchema }) },
  }, async (request) => found(await store.workspaces.get(request.auth.workspaceId), "workspace", request.auth.workspaceId));

  app.get(`${API_PREFIX}/workspace/current/signing-key`, {
    config: { access: "write" },
    schema: {
      tags: ["workspace"], summary: "The key that signs task callbacks (HMAC-SHA256 over base64(body) + \":\" + timestamp)",
      response: responses({ 200: Type.Object({ signingKey: Type.String() }) }),
    },
  }, async (request) => ({ signingKey: found(await store.workspaces.signingKey(request.auth.workspaceId), "workspace", request.auth.workspaceId) }));

  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/token`, {
    config: { access: "write" },
    schema: { tags: ["token"], summary: "List the workspace's tokens (never their keys)", querystring: ListQuerySchema, response: responses({ 200: Items(TokenSchema) }) },
  }, async (request) => ({ items: await store.tokens.list(request.auth.workspaceId, toPage(request.query)) }));

  app.post<{ Body: CreateTokenBody }>(`${API_PREFIX}/token`, {
    config: { access: "write" },
    schema: {
      tags: ["token"], summary: "Create a token; its key is in this response only", body: CreateTokenBodySchema,
      response: responses({ 201: TokenWithKeySchema }),
    },
  }, async (request, reply) => {
    const { type, name } = request.body;
    if (!mintableBy[type].includes(request.auth.type)) {
      throw new Beta9Error("AUTH_FORBIDDEN", {
        tokenType: request.auth.type, action: `create ${type} tokens`, allowed: mintableBy[type].join(" or "),
      });
    }
    return reply.code(201).send(await store.tokens.create(request.auth.workspaceId, type, name));
  });

  app.delete<{ Params: IdParams }>(`${API_PREFIX}/token/:id`, {
    config: { access: "write" },
    schema: { tags: ["token"], summary: "Revoke a token (idempotent)", params: IdParamsSchema, response: responses({ 200: TokenSchema }) },
  }, async (request) => {
    const { workspaceId, type } = request.auth;
    const token = found(await store.tokens.get(workspaceId, request.params.id), "token", request.params.id);
    if (!mintableBy[token.type].includes(type)) {
      throw new Beta9Error("AUTH_FORBIDDEN", { tokenType: type, action: `revoke ${token.type} tokens`, allowed: mintableBy[token.type].join(" or ") });
    }
    return found(await store.tokens.revoke(workspaceId, request.params.id), "token", request.params.id);
  });
}
