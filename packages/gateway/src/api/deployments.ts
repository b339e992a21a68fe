/** Deployments: a stub published under a name, versioned v1, v2, …; stop, start, delete. */
import type { FastifyInstance } from "fastify";
import type { Static } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, CreateDeploymentBodySchema, DeploymentListQuerySchema, DeploymentSchema, IdParamsSchema,
  type CreateDeploymentBody, type DeploymentListQuery,
} from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

type IdParams = Static<typeof IdParamsSchema>;

export function deploymentRoutes(app: FastifyInstance, { store, autoscaler }: GatewayContext): void {
  /** A stub whose last active deployment went away keeps no containers. */
  const drainIfUnused = async (workspaceId: string, stubId: string) => {
    const stillActive = (await store.deployments.list(workspaceId, { limit: 1000, offset: 0, active: true })).some((d) => d.stubId === stubId);
    if (!stillActive) autoscaler.drain(stubId);
  };
  /** A deployment would start containers from its stub's image: the workspace must still have it. */
  const checkImage = async (workspaceId: string, stub: { name: string; config: { imageId: string | null } }) => {
    const { imageId } = stub.config;
    if (imageId !== null && !(await store.images.get(workspaceId, imageId))) {
      throw new Beta9Error("CONFLICT", { reason: `${stub.name}'s image ${imageId} was deleted from this workspace (beta9 image delete); deploy again to build it` });
    }
  };
  app.post<{ Body: CreateDeploymentBody }>(`${API_PREFIX}/deployment`, {
    config: { access: "write" },
    schema: {
      tags: ["deployment"], summary: "Deploy a stub under a name (next version)", body: CreateDeploymentBodySchema,
      response: responses({ 201: DeploymentSchema }),
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const stub = found(await store.stubs.get(workspaceId, request.body.stubId), "stub", request.body.stubId);
    await checkImage(workspaceId, stub);
    const deployment = await store.deployments.create(workspaceId, stub.id, request.body.name ?? stub.name);
    return reply.code(201).send(deployment);
  });

  app.get<{ Querystring: DeploymentListQuery }>(`${API_PREFIX}/deployment`, {
    config: { access: "read" },
    schema: {
      tags: ["deployment"], summary: "List deployments, newest first", querystring: DeploymentListQuerySchema,
      response: responses({ 200: Items(DeploymentSchema) }),
    },
  }, async (request) => {
    const { name, active } = request.query;
    const filter = { ...toPage(request.query), ...(name !== undefined && { name }), ...(active !== undefined && { active: active === "true" }) };
    return { items: await store.deployments.list(request.auth.workspaceId, filter) };
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/deployment/:id`, {
    config: { access: "read" },
    schema: { tags: ["deployment"], summary: "Get a deployment", params: IdParamsSchema, response: responses({ 200: DeploymentSchema }) },
  }, async (request) => found(await store.deployments.get(request.auth.workspaceId, request.params.id), "deployment", request.params.id));

  for (const [action, active] of [["stop", false], ["start", true]] as const) {
    app.post<{ Params: IdParams }>(`${API_PREFIX}/deployment/:id/${action}`, {
      config: { access: "write" },
      schema: {
        tags: ["deployment"], summary: `${action === "stop" ? "Stop" : "Start"} a deployment (idempotent)`,
        params: IdParamsSchema, response: responses({ 200: DeploymentSchema }),
      },
    }, async (request) => {
      const { id } = request.params;
      if (active) {
        const current = found(await store.deployments.get(request.auth.workspaceId, id), "deployment", id);
        const stub = await store.stubs.get(request.auth.workspaceId, current.stubId);
        if (stub) await checkImage(request.auth.workspaceId, stub);
      }
      const deployment = found(await store.deployments.setActive(request.auth.workspaceId, id, active), "deployment", id);
      if (!active) await drainIfUnused(request.auth.workspaceId, deployment.stubId);
      return deployment;
    });
  }

  app.post<{ Params: IdParams }>(`${API_PREFIX}/deployment/:id/restart`, {
    config: { access: "write" },
    schema: {
      tags: ["deployment"], summary: "Replace the deployment's containers (e.g. after a secret changed): running ones finish their work and stop, new ones start",
      params: IdParamsSchema, response: responses({ 200: DeploymentSchema }),
    },
  }, async (request) => {
    const { id } = request.params;
    const deployment = found(await store.deployments.get(request.auth.workspaceId, id), "deployment", id);
    if (!deployment.active) throw new Beta9Error("DEPLOYMENT_STOPPED", { name: deployment.name, version: deployment.version, id });
    autoscaler.restart(deployment.stubId);
    return deployment;
  });

  app.delete<{ Params: IdParams }>(`${API_PREFIX}/deployment/:id`, {
    config: { access: "write" },
    schema: { tags: ["deployment"], summary: "Delete a deployment; its version number stays taken", params: IdParamsSchema },
  }, async (request, reply) => {
    const { id } = request.params;
    const deployment = found(await store.deployments.get(request.auth.workspaceId, id), "deployment", id);
    found((await store.deployments.delete(request.auth.workspaceId, id)) ? true : undefined, "deployment", id);
    await drainIfUnused(request.auth.workspaceId, deployment.stubId);
    return reply.code(204).send();
  });
}
