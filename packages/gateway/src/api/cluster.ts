/** Tasks and pools (machines: api/machines.ts). */
import type { FastifyInstance } from "fastify";
import type { Static } from "@sinclair/typebox";
import {
  API_PREFIX, CreatePoolBodySchema, IdParamsSchema, ListQuerySchema, PoolSchema, TaskSchema,
  type CreatePoolBody,
} from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

type ListQuery = Static<typeof ListQuerySchema>;
type IdParams = Static<typeof IdParamsSchema>;

export function clusterRoutes(app: FastifyInstance, { store, scheduler }: GatewayContext): void {
  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/task`, {
    config: { access: "read" },
    schema: { tags: ["task"], summary: "List tasks, newest first", querystring: ListQuerySchema, response: responses({ 200: Items(TaskSchema) }) },
  }, async (request) => ({ items: await store.tasks.list(request.auth.workspaceId, toPage(request.query)) }));

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
