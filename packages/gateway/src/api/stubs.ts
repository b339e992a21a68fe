/** Apps and stubs: a stub is one configured workload, reused while its config is unchanged. */
import { isIP } from "node:net";
import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import {
  API_PREFIX, AppSchema, Beta9Error, CreateStubBodySchema, IdParamsSchema, ListQuerySchema, StubConfigError, StubSchema,
  hashStubConfig, isPrivateAddress, normalizeStubConfig, type CreateStubBody, type Stub, type StubKind, type StubType,
} from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

type ListQuery = Static<typeof ListQuerySchema>;
type IdParams = Static<typeof IdParamsSchema>;

/** The app a stub belongs to when the client names none. */
export const DEFAULT_APP = "default";

const StubCreated = Type.Object({
  stub: StubSchema,
  created: Type.Boolean(),
  warnings: Type.Array(Type.String(), { description: "what will keep it from running now, e.g. a GPU no connected worker has" }),
});

/** A restricted token (clients that only call endpoints) sees env names, never their values. */
function forReader(stub: Stub, type: string): Stub {
  if (type === "admin" || type === "workspace") return stub;
  const env = Object.fromEntries(Object.keys(stub.config.env).map((k) => [k, "(hidden)"]));
  return { ...stub, config: { ...stub.config, env } };
}

export function stubRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store } = ctx;
  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/app`, {
    config: { access: "read" },
    schema: { tags: ["app"], summary: "List apps", querystring: ListQuerySchema, response: responses({ 200: Items(AppSchema) }) },
  }, async (request) => ({ items: await store.apps.list(request.auth.workspaceId, toPage(request.query)) }));

  app.get<{ Params: IdParams }>(`${API_PREFIX}/app/:id`, {
    config: { access: "read" },
    schema: { tags: ["app"], summary: "Get an app", params: IdParamsSchema, response: responses({ 200: AppSchema }) },
  }, async (request) => found(await store.apps.get(request.auth.workspaceId, request.params.id), "app", request.params.id));

  app.post<{ Body: CreateStubBody }>(`${API_PREFIX}/stub`, {
    config: { access: "write" },
    schema: {
      tags: ["stub"],
      summary: "Get or create a stub from a validated config",
      description: "Units are normalized (cpu to millicores, memory to MiB, GPU names to canonical names) before hashing, so equal configs reuse one stub.",
      body: CreateStubBodySchema,
      response: responses({ 200: StubCreated, 201: StubCreated }),
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const body = request.body;
    const kind = body.type.split("/")[0] as StubKind;
    let config;
    try {
      config = normalizeStubConfig(kind, body.config ?? {});
    } catch (err) {
      if (err instanceof StubConfigError) throw new Beta9Error("INVALID_CONFIG", { field: err.field, reason: err.reason });
      throw err;
    }
    // An image is usable by the workspaces that asked for it (built or joined a build), as for
    // containers and sandboxes: an image id seen elsewhere is not a key to another tenant's image.
    if (config.imageId !== null && !(await store.images.get(workspaceId, config.imageId))) {
      throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "image", id: config.imageId });
    }
    if (config.callbackUrl && process.env.BETA9_ALLOW_PRIVATE_CALLBACKS !== "1") {
      const host = new URL(config.callbackUrl).hostname.replace(/^\[|\]$/g, "");
      if (host === "localhost" || host.endsWith(".localhost") || (isIP(host) !== 0 && isPrivateAddress(host))) {
        throw new Beta9Error("INVALID_CONFIG", { field: "callbackUrl", reason: `${host} is a loopback, link-local or private address; callbacks go to public addresses only (an operator can allow private ones with BETA9_ALLOW_PRIVATE_CALLBACKS=1)` });
      }
    }
    if (config.secrets.length > 0) {
      if (!ctx.secrets) throw new Beta9Error("SECRET_NOT_FOUND", { name: config.secrets[0]! });
      ctx.secrets.check(workspaceId, config.secrets);
    }
    if (body.objectId !== undefined && !(await store.objects.get(workspaceId, body.objectId))) {
      throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "object", id: body.objectId });
    }
    const appRow = await store.apps.getOrCreate(workspaceId, body.app ?? DEFAULT_APP);
    const result = await store.stubs.getOrCreate({
      workspaceId, appId: appRow.id, name: body.name, type: body.type as StubType, objectId: body.objectId ?? null,
      config, configHash: hashStubConfig(config),
    });
    // A workload no connected worker could ever run still deploys (a worker may join later), with a warning.
    const reason = kind === "sandbox" ? undefined : ctx.scheduler.neverFits({
      cpuMillicores: config.cpuMillicores, memoryMiB: config.memoryMiB, gpu: config.gpu, gpuCount: config.gpuCount, pool: config.pool, workspaceId,
    });
    const warnings = reason ? [`${body.name}: ${reason}; calls answer 503 CAPACITY_UNAVAILABLE until such a worker connects`] : [];
    return reply.code(result.created ? 201 : 200).send({ ...result, warnings });
  });

  app.get<{ Querystring: ListQuery }>(`${API_PREFIX}/stub`, {
    config: { access: "read" },
    schema: { tags: ["stub"], summary: "List stubs", querystring: ListQuerySchema, response: responses({ 200: Items(StubSchema) }) },
  }, async (request) => ({ items: (await store.stubs.list(request.auth.workspaceId, toPage(request.query))).map((s) => forReader(s, request.auth.type)) }));

  app.get<{ Params: IdParams }>(`${API_PREFIX}/stub/:id`, {
    config: { access: "read" },
    schema: { tags: ["stub"], summary: "Get a stub (env values only for admin and workspace tokens)", params: IdParamsSchema, response: responses({ 200: StubSchema }) },
  }, async (request) => forReader(found(await store.stubs.get(request.auth.workspaceId, request.params.id), "stub", request.params.id), request.auth.type));
}
