/**
 * Invoking deployed endpoints: `POST /endpoint/:name[/latest|/v:N]` and `/endpoint/id/:stubId`.
 * The body is the handler's input; the answer is its result. Scales from zero: a request that
 * finds no container waits (bounded) while one starts.
 *
 * `POST /public/:stubId` calls a deployed workload whose stub says `authorized: false` without a
 * token; for every other stub it answers 404 exactly as for an unknown id, so it reveals nothing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { randomUUID } from "node:crypto";
import { Beta9Error, TASK_ID_HEADER, type Stub } from "@beta9/protocol";
import type { Autoscaler } from "../workloads/autoscaler.js";
import { checkedInput, found, parseVersion, resolveDeployedStub, type GatewayContext } from "./common.js";
import { callFunction, putTask } from "./tasks.js";

/** Inputs up to 32 MiB (model prompts, small images as base64). */
const INVOKE_BODY_LIMIT = 32 * 1024 * 1024;

interface RunnerError {
  error?: { code?: string; message?: string; stack?: unknown };
}

/** A handler's stack (both runners send it) as far as a caller gets it: bounded, text only. */
const MAX_STACK_CHARS = 16 * 1024;

/**
 * The result inside the runner's `{"result":…}` answer, as JSON text. The runner writes exactly
 * `JSON.stringify({ result })` (runner-protocol), so the value is the text between the key and the
 * closing brace: no parse and re-serialization on the hot path. Anything else is parsed.
 */
const RESULT_PREFIX = '{"result":';
function resultOf(text: string): string {
  if (text.startsWith(RESULT_PREFIX) && text.endsWith("}")) return text.slice(RESULT_PREFIX.length, -1);
  return JSON.stringify((JSON.parse(text) as { result?: unknown }).result ?? null);
}

async function invoke(stub: Stub, autoscaler: Autoscaler, request: FastifyRequest, reply: FastifyReply, options: { stack: boolean } = { stack: true }) {
  if (!stub.type.startsWith("endpoint/")) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}, not an endpoint; call it through its own route` });
  }
  const input = checkedInput(stub, request.body);
  const slot = await autoscaler.acquire(stub);
  const taskId = randomUUID();
  try {
    const timeoutMs = Math.max(1, stub.config.taskPolicy.timeout) * 1000;
    let res;
    try {
      res = await slot.runner.request({
        path: "/invoke", method: "POST", headers: { "content-type": "application/json", [TASK_ID_HEADER]: taskId },
        body: JSON.stringify({ input }), headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
        throw new Beta9Error("TASK_TIMEOUT", { name: stub.name, timeout: stub.config.taskPolicy.timeout, id: taskId });
      }
      throw new Beta9Error("UPSTREAM_FAILED", { reason: (err as Error).message });
    }
    const text = await res.body.text();
    reply.header(TASK_ID_HEADER, taskId);
    if (res.statusCode === 200) return reply.type("application/json").send(resultOf(text));
    const body = (() => {
      try {
        return JSON.parse(text) as RunnerError;
      } catch {
        return {} as RunnerError;
      }
    })();
    const message = body.error?.message ?? text.slice(0, 500);
    if (res.statusCode === 422) throw new Beta9Error("INPUT_INVALID", { reason: message });
    if (res.statusCode === 500) {
      // The stack says where it failed (the user's file and line, via the bundle's source map);
      // anonymous callers of a public workload get the message only.
      const stack = body.error?.stack;
      const details = options.stack && typeof stack === "string" ? { stack: stack.slice(0, MAX_STACK_CHARS) } : undefined;
      throw new Beta9Error("HANDLER_ERROR", { reason: message }, details);
    }
    throw new Beta9Error("UPSTREAM_FAILED", { reason: `the runner answered ${res.statusCode}: ${message}` });
  } finally {
    slot.release();
  }
}

/** Any workload's stub, whatever its kind: what `/public/:stubId` and serve sessions call. */
export async function invokeAny(ctx: GatewayContext, stub: Stub, request: FastifyRequest, reply: FastifyReply, options: { stack: boolean } = { stack: true }): Promise<unknown> {
  if (stub.type.startsWith("endpoint/")) return invoke(stub, ctx.autoscaler, request, reply, options);
  if (stub.type.startsWith("taskqueue/")) return putTask(ctx, stub, request.body);
  if (stub.type.startsWith("function/")) return callFunction(ctx, stub, request.body, reply);
  throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}: it runs on its schedule and takes no calls` });
}

/**
 * The stub behind `/public/:stubId`: an `authorized: false` stub with an active deployment. Any
 * other stub (authorized, never deployed, stopped, unknown) is a 404 that names only the id.
 */
async function resolvePublicStub(store: GatewayContext["store"], stubId: string): Promise<Stub> {
  const stub = await store.stubs.getAny(stubId);
  const hidden = () => new Beta9Error("RESOURCE_NOT_FOUND", { kind: "public workload", id: stubId });
  if (!stub || stub.config.authorized !== false || !stub.type.endsWith("/deployment")) throw hidden();
  // Deployment lists are cached per workspace in the store, so this costs no query when warm.
  const active = await store.deployments.list(stub.workspaceId, { active: true, limit: 1000, offset: 0 });
  if (!active.some((d) => d.stubId === stub.id)) throw hidden();
  return stub;
}

export function invokeRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, autoscaler } = ctx;
  const resolve = (workspaceId: string, name: string, version: number | "latest") => resolveDeployedStub(store, workspaceId, name, version);
  const options = { config: { access: "read" as const }, bodyLimit: INVOKE_BODY_LIMIT, schema: { tags: ["invoke"] } };

  app.post<{ Params: { name: string } }>("/endpoint/:name", { ...options, schema: { ...options.schema, summary: "Call the latest version of a deployed endpoint" } },
    async (request, reply) => invoke(await resolve(request.auth.workspaceId, request.params.name, "latest"), autoscaler, request, reply));
  app.post<{ Params: { name: string } }>("/endpoint/:name/latest", { ...options, schema: { ...options.schema, summary: "Call the latest version" } },
    async (request, reply) => invoke(await resolve(request.auth.workspaceId, request.params.name, "latest"), autoscaler, request, reply));
  app.post<{ Params: { name: string; version: string } }>("/endpoint/:name/v:version", { ...options, schema: { ...options.schema, summary: "Call one version" } },
    async (request, reply) => invoke(await resolve(request.auth.workspaceId, request.params.name, parseVersion(request.params.version)), autoscaler, request, reply));
  app.post<{ Params: { stubId: string } }>("/endpoint/id/:stubId", { ...options, schema: { ...options.schema, summary: "Call a stub by id" } },
    async (request, reply) => invoke(found(await store.stubs.get(request.auth.workspaceId, request.params.stubId), "stub", request.params.stubId), autoscaler, request, reply));
  app.post<{ Params: { stubId: string } }>("/public/:stubId", {
    config: { access: "public" }, bodyLimit: INVOKE_BODY_LIMIT,
    schema: { tags: ["invoke"], summary: "Call a deployed workload whose stub has authorized: false, without a token", security: [] },
  }, async (request, reply) => invokeAny(ctx, await resolvePublicStub(store, request.params.stubId), request, reply, { stack: false }));
}
