/** Task queues: put tasks, read them, cancel them, and follow them over SSE until they end. */
import type { FastifyInstance, FastifyReply } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, IdParamsSchema, INPUT_INVALID_TASK_ERROR, TASK_ID_HEADER, TaskSchema, type Stub, type Task } from "@beta9/protocol";
import { isTerminal } from "../tasks/dispatcher.js";
import { checkedInput, found, parseVersion, resolveDeployedStub, responses, type GatewayContext } from "./common.js";
import { streamEvents } from "./sse.js";

type IdParams = Static<typeof IdParamsSchema>;
const PutResponseSchema = Type.Object({ task_id: Type.String() });

/** Puts a task on a task queue's stub (any invocation route ends here): `{ task_id }`. */
export async function putTask({ dispatcher }: Pick<GatewayContext, "dispatcher">, stub: Stub, input: unknown): Promise<{ task_id: string }> {
  if (!stub.type.startsWith("taskqueue/")) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not a task queue; call it through its own route` });
  }
  const checked = checkedInput(stub, input);
  refuseWhenFull(dispatcher, stub);
  const task = await dispatcher.put(stub, checked);
  return { task_id: task.id };
}

/**
 * maxPendingTasks holds for every way in: task queues, functions, public routes. The 429 carries
 * `Retry-After` (http-errors.ts) and `details: { count, limit }`, so a client can keep its calls
 * in flight under the bound (the SDK's `.map` does).
 */
function refuseWhenFull(dispatcher: GatewayContext["dispatcher"], stub: Stub): void {
  const count = dispatcher.inflight(stub.id);
  const limit = stub.config.maxPendingTasks;
  if (count >= limit) throw new Beta9Error("QUEUE_FULL", { name: stub.name, count, limit }, { count, limit });
}

/** Runs a function's stub as a durable task and answers its result when it ends (fn.remote()). */
export async function callFunction({ dispatcher }: Pick<GatewayContext, "dispatcher">, stub: Stub, input: unknown, reply: FastifyReply, options: { stack: boolean } = { stack: true }): Promise<FastifyReply> {
  if (!stub.type.startsWith("function/")) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not a function; call it through its own route` });
  }
  const checked = checkedInput(stub, input);
  refuseWhenFull(dispatcher, stub);
  const task = await dispatcher.put(stub, checked);
  // The task is durable and runs to its end either way; a caller that leaves stops waiting for it.
  let stack: string | undefined;
  const final = await new Promise<Task | undefined>((resolve) => {
    const done = (t: Task | undefined) => {
      dispatcher.events.off(task.id, listener);
      reply.raw.off("close", gone);
      resolve(t);
    };
    const listener = (t: Task) => {
      if (!isTerminal(t)) return;
      stack = dispatcher.stackOf(t.id); // read now: it is dropped once this event is told
      done(t);
    };
    const gone = () => done(undefined);
    dispatcher.events.on(task.id, listener);
    reply.raw.once("close", gone);
  });
  if (final === undefined) return reply;
  reply.header(TASK_ID_HEADER, task.id);
  if (final.status === "COMPLETE") return reply.type("application/json").send(JSON.stringify(final.result ?? null));
  if (final.status === "TIMEOUT") throw new Beta9Error("TASK_TIMEOUT", { name: stub.name, timeout: stub.config.taskPolicy.timeout, id: task.id });
  if (final.status === "CANCELLED") throw new Beta9Error("TASK_CANCELLED", { name: stub.name, id: task.id });
  // As an endpoint answers a bad input: 422 naming the field, not a handler error.
  if (final.error?.startsWith(INPUT_INVALID_TASK_ERROR)) throw new Beta9Error("INPUT_INVALID", { reason: final.error.slice(INPUT_INVALID_TASK_ERROR.length) });
  // As an endpoint's: the handler's stack for a caller with a token (anonymous callers get the message).
  const details = stack !== undefined && options.stack ? { stack } : undefined;
  throw new Beta9Error("HANDLER_ERROR", { reason: `task ${task.id} ended ${final.status}: ${final.error ?? "no detail"}` }, details);
}

export function taskRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, dispatcher } = ctx;
  const resolve = (workspaceId: string, name: string, version: number | "latest") => resolveDeployedStub(store, workspaceId, name, version);
  const put = (stub: Stub, input: unknown) => putTask(ctx, stub, input);
  const options = { config: { access: "read" as const }, bodyLimit: 32 * 1024 * 1024, schema: { tags: ["invoke"], response: responses({ 200: PutResponseSchema }) } };

  app.post<{ Params: { name: string } }>("/taskqueue/:name", options,
    async (request) => put(await resolve(request.auth.workspaceId, request.params.name, "latest"), request.body));
  app.post<{ Params: { name: string } }>("/taskqueue/:name/latest", options,
    async (request) => put(await resolve(request.auth.workspaceId, request.params.name, "latest"), request.body));
  app.post<{ Params: { name: string; version: string } }>("/taskqueue/:name/v:version", options,
    async (request) => put(await resolve(request.auth.workspaceId, request.params.name, parseVersion(request.params.version)), request.body));
  app.post<{ Params: { stubId: string } }>("/taskqueue/id/:stubId", options,
    async (request) => put(found(await store.stubs.get(request.auth.workspaceId, request.params.stubId), "stub", request.params.stubId), request.body));

  // Functions: the same durable task, answered when it ends (the SDK's fn.remote()).
  const call = (stub: Stub, input: unknown, reply: FastifyReply) => callFunction(ctx, stub, input, reply);
  const fnOptions = { config: { access: "read" as const }, bodyLimit: 32 * 1024 * 1024, schema: { tags: ["invoke"] } };
  app.post<{ Params: { name: string } }>("/function/:name", fnOptions,
    async (request, reply) => call(await resolve(request.auth.workspaceId, request.params.name, "latest"), request.body, reply));
  app.post<{ Params: { stubId: string } }>("/function/id/:stubId", fnOptions,
    async (request, reply) => call(found(await store.stubs.get(request.auth.workspaceId, request.params.stubId), "stub", request.params.stubId), request.body, reply));
  app.post<{ Params: { name: string; version: string } }>("/function/:name/v:version", fnOptions,
    async (request, reply) => call(await resolve(request.auth.workspaceId, request.params.name, parseVersion(request.params.version)), request.body, reply));

  app.post<{ Params: IdParams }>(`${API_PREFIX}/task/:id/cancel`, {
    config: { access: "write" },
    schema: { tags: ["task"], summary: "Cancel a pending or running task (a running handler sees its signal abort)", params: IdParamsSchema, response: responses({ 200: TaskSchema }) },
  }, async (request) => {
    const task = found(await store.tasks.get(request.auth.workspaceId, request.params.id), "task", request.params.id);
    await dispatcher.cancel(task);
    return found(await store.tasks.get(request.auth.workspaceId, task.id), "task", task.id);
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/task/:id/subscribe`, {
    config: { access: "read" },
    schema: { tags: ["task"], summary: "text/event-stream of `state` events (the task) until it ends; the last event is `end`", params: IdParamsSchema },
  }, async (request, reply) => {
    const task = found(await store.tasks.get(request.auth.workspaceId, request.params.id), "task", request.params.id);
    streamEvents(request, reply, (emit, end) => {
      const listener = (t: typeof task) => (isTerminal(t) ? end(t) : emit("state", t));
      dispatcher.events.on(task.id, listener);
      if (isTerminal(task)) end(task);
      else emit("state", task);
      return () => dispatcher.events.off(task.id, listener);
    });
  });
}
