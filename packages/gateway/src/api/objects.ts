/** Content-addressed code bundles: HEAD to skip what exists, PUT to upload, GET to fetch. */
import { checkQuota, DEFAULT_QUOTAS } from "../quotas.js";
import type { FastifyInstance } from "fastify";
import type { Readable } from "node:stream";
import type { Static } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, HashParamsSchema, ListQuerySchema, ObjectSchema } from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";

type HashParams = Static<typeof HashParamsSchema>;

export function objectRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, objects } = ctx;

  // Encapsulated so that only these routes take raw bytes; everything else stays JSON-only.
  app.register(async (scope) => {
    scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));

    scope.head<{ Params: HashParams }>(`${API_PREFIX}/object/:hash`, {
      config: { access: "read" },
      schema: { tags: ["object"], summary: "200 when the workspace holds the object, else 404", params: HashParamsSchema },
    }, async (request, reply) => {
      const object = found(await store.objects.get(request.auth.workspaceId, request.params.hash), "object", request.params.hash);
      return reply.header("content-length", object.size).code(200).send();
    });

    scope.get<{ Params: HashParams }>(`${API_PREFIX}/object/:hash`, {
      config: { access: "read" },
      schema: { tags: ["object"], summary: "Download an object's bytes", params: HashParamsSchema },
    }, async (request, reply) => {
      const object = found(await store.objects.get(request.auth.workspaceId, request.params.hash), "object", request.params.hash);
      return reply.type("application/octet-stream").header("content-length", object.size).send(objects.open(object.hash));
    });

    scope.get<{ Params: HashParams }>(`${API_PREFIX}/worker/object/:hash`, {
      config: { access: "worker" },
      schema: { tags: ["worker"], summary: "A code bundle for a container a worker runs (any workspace's)", params: HashParamsSchema },
    }, async (request, reply) => {
      const { hash } = request.params;
      // A machine runs only its own workspace's containers, so it gets only that workspace's code.
      const visible = request.auth.type === "machine" ? (await store.objects.get(request.auth.workspaceId, hash)) !== undefined : await objects.has(hash);
      if (!visible) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "object", id: hash });
      return reply.type("application/octet-stream").send(objects.open(hash));
    });

    scope.put<{ Params: HashParams; Body: Readable }>(`${API_PREFIX}/object/:hash`, {
      config: { access: "write" },
      schema: {
        tags: ["object"],
        summary: "Upload a code bundle (tar or tar.gz) under its sha256",
        description: "The bytes are hashed while they arrive and refused unless they match :hash. Bundles with absolute paths, `..` entries, links out of the bundle or device nodes are refused.",
        params: HashParamsSchema,
        response: responses({ 200: ObjectSchema, 201: ObjectSchema }),
      },
    }, async (request, reply) => {
      const { hash } = request.params;
      const { workspaceId } = request.auth;
      const declared = Number(request.headers["content-length"] ?? Number.NaN);
      if (declared > objects.maxBytes) {
        request.body.resume();
        throw new Beta9Error("OBJECT_TOO_LARGE", { limit: objects.maxBytes });
      }
      const existing = await store.objects.get(workspaceId, hash);
      if (existing && (await objects.has(hash))) {
        request.body.resume();
        return reply.code(200).send(existing);
      }
      // Quota: a declared length is checked up front; a streamed body (no length) is cut off where
      // the workspace's room ends, as at the size limit. Either way nothing past the quota is kept.
      const quotas = ctx.quotas ?? DEFAULT_QUOTAS;
      const held = existing ? 0 : await store.objects.totalBytes(workspaceId);
      if (!existing) {
        try {
          checkQuota(quotas, "objectBytes", held, Number.isFinite(declared) ? declared : 0);
        } catch (err) {
          request.body.resume();
          throw err;
        }
      }
      const room = existing ? objects.maxBytes : Math.min(objects.maxBytes, quotas.objectBytes - held);
      let size: number;
      try {
        ({ size } = await objects.write(hash, request.body, room));
      } catch (err) {
        if (room < objects.maxBytes && err instanceof Beta9Error && err.code === "OBJECT_TOO_LARGE") checkQuota(quotas, "objectBytes", held, room + 1);
        throw err;
      }
      const { object, created } = await store.objects.put(workspaceId, hash, size);
      return reply.code(created ? 201 : 200).send(object);
    });
  });

  app.get<{ Querystring: Static<typeof ListQuerySchema> }>(`${API_PREFIX}/object`, {
    config: { access: "read" },
    schema: { tags: ["object"], summary: "List the workspace's objects", querystring: ListQuerySchema, response: responses({ 200: Items(ObjectSchema) }) },
  }, async (request) => ({ items: await store.objects.list(request.auth.workspaceId, toPage(request.query)) }));
}

