/** Health and the OpenAPI document: the only routes that need no token. */
import type { FastifyInstance } from "fastify";
import { Type } from "@sinclair/typebox";
import { API_PREFIX } from "@beta9/protocol";
import { responses, type GatewayContext } from "./common.js";

const HealthSchema = Type.Object({
  status: Type.Literal("ok"),
  version: Type.String(),
  schemaVersion: Type.Integer(),
  uptimeSeconds: Type.Number(),
});

export function healthRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get(`${API_PREFIX}/health`, {
    config: { access: "public" },
    schema: { tags: ["system"], summary: "Liveness and version", response: responses({ 200: HealthSchema }) },
  }, async () => ({
    status: "ok" as const,
    version: ctx.version,
    schemaVersion: ctx.schemaVersion,
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 100) / 10,
  }));

  app.get(`${API_PREFIX}/openapi.json`, {
    config: { access: "public" },
    schema: { hide: true },
  }, async () => app.swagger());
}
