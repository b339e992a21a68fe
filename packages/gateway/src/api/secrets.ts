/** Secrets: write-only values by name. No route ever returns a value (secrets/secrets.ts). */
import type { FastifyInstance } from "fastify";
import type { Static } from "@sinclair/typebox";
import {
  API_PREFIX, CreateSecretBodySchema, ListQuerySchema, SecretParamsSchema, SecretSchema, UpdateSecretBodySchema,
  type CreateSecretBody, type UpdateSecretBody,
} from "@beta9/protocol";
import { Items, responses, toPage, type GatewayContext } from "./common.js";

type SecretParams = Static<typeof SecretParamsSchema>;

export function secretRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { secrets } = ctx;
  if (!secrets) throw new Error("secretRoutes needs ctx.secrets (buildGatewayApp provides it)");
  app.get<{ Querystring: Static<typeof ListQuerySchema> }>(`${API_PREFIX}/secret`, {
    config: { access: "read" },
    schema: { tags: ["secret"], summary: "List the workspace's secrets: names and dates, never values", querystring: ListQuerySchema, response: responses({ 200: Items(SecretSchema) }) },
  }, async (request) => ({ items: await secrets.list(request.auth.workspaceId, toPage(request.query)) }));

  app.post<{ Body: CreateSecretBody }>(`${API_PREFIX}/secret`, {
    config: { access: "write" },
    schema: { tags: ["secret"], summary: "Create a secret (its value is never returned)", body: CreateSecretBodySchema, response: responses({ 201: SecretSchema }) },
  }, async (request, reply) => reply.code(201).send(await secrets.create(request.auth.workspaceId, request.body.name, request.body.value)));

  app.put<{ Params: SecretParams; Body: UpdateSecretBody }>(`${API_PREFIX}/secret/:name`, {
    config: { access: "write" },
    schema: {
      tags: ["secret"], summary: "Change a secret's value; containers started from now on get it", params: SecretParamsSchema,
      body: UpdateSecretBodySchema, response: responses({ 200: SecretSchema }),
    },
  }, async (request) => secrets.update(request.auth.workspaceId, request.params.name, request.body.value));

  app.delete<{ Params: SecretParams }>(`${API_PREFIX}/secret/:name`, {
    config: { access: "write" },
    schema: { tags: ["secret"], summary: "Delete a secret", params: SecretParamsSchema },
  }, async (request, reply) => {
    await secrets.delete(request.auth.workspaceId, request.params.name);
    return reply.code(204).send();
  });
}
