/** Tasks and pools (machines: api/machines.ts). */
import type { FastifyInstance } from "fastify";
import type { Static } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, CreatePoolBodySchema, IdParamsSchema, ListQuerySchema, PoolSchema, TaskListQuerySchema, TaskSchema,
  type CreatePoolBody, type TaskListQuery, type TaskStatus,
} from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

type ListQuery = Static<typeof ListQuerySchema>;
type IdParams = Static<typeof IdParamsSchema>;

export function clusterRoutes(app: FastifyInstance, { store, scheduler }: GatewayContext): void {
  app.get<{ Querystring: TaskListQuery }>(`${API_PREFIX}/task`, {
    config: { access: "read" },
    schema: {
      tags: ["task"], summary: "List tasks, newest first; filtered by status (comma-separated) and by stub id or deployment name", querystring: TaskListQuerySchema,
      response: responses({ 200: Items(TaskSchema) }),
    },
  }, async (request) => {
    const { status, stub, deployment } = request.query;
    // One workload at a time: a stub and a deployment together would mostly match nothing, silently.
    if (stub !== undefined && deployment !== undefined) throw new Beta9Error("BAD_REQUEST", { reason: "filter by stub or by deployment, not both" });
    const filter = {
      ...toPage(request.query),
      ...(status !== undefined && { status: [...new Set(status.split(","))] as TaskStatus[] }),
      ...(stub !== undefined && { stubId: stub }),
      ...(deployment !== undefined && { deployment }),
    };
    return { items: await store.tasks.list(request.auth.workspaceId, filter) };
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/task/:id`, {
    config: { access: "read" },
    schema: { tags: ["task"], summary: "Get a task (while it waits for a container that cannot be placed: `waiting`, why)", params: IdParamsSchema, response: responses({ 200: TaskSchema }) },
  }, async (request) => {
    const task = found(await store.tasks.get(request.auth.workspaceId, request.params.id), "task", request.params.id);
    // A task waiting for its attempt (not for a retry's backoff) waits for the stub's containers; say why they are not placed.
    const due = task.status === "PENDING" || (task.status === "RETRY" && (task.nextAttemptAt === null || Date.parse(task.nextAttemptAt) <= Date.now()));
    const waiting = due ? scheduler.waiting(task.stubId) : undefined;
    return waiting ? { ...task, waiting } : task;
  });

  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/pool`, {
    config: { access: "read" },
    schema: { tags: ["pool"], summary: "List pools", querystring: ListQuerySchema, response: responses({ 200: Items(PoolSchema) }) },
  }, async (request) => ({ items: await store.pools.list(toPage(request.query)) }));

  app.post<{ Body: CreatePoolBody }>(`${API_PREFIX}/pool`, {
    config: { access: "admin" },
    schema: { tags: ["pool"], summary: "Create a pool", body: CreatePoolBodySchema, response: responses({ 201: PoolSchema }) },
  }, async (request, reply) => reply.code(201).send(await store.pools.create(request.body.name, request.body.description ?? "")));
}
