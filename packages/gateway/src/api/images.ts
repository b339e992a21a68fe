/** Images: build (or reuse) from a spec, list, follow a build's log; workers fetch and upload packed images. */
import type { FastifyInstance } from "fastify";
import type { Readable } from "node:stream";
import { Type, type Static } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, BuildImageBodySchema, ImageIdParamsSchema, ImageSchema, ImageSpecError, ListQuerySchema, ContainerLogsQuerySchema,
  LogLineSchema, copyObjects, credentialSecretNames, imageId, normalizeImageSpec, type BuildImageBody,
} from "@beta9/protocol";
import { found, Items, responses, toPage, type GatewayContext } from "./common.js";
import { streamEvents } from "./sse.js";

type IdParams = Static<typeof ImageIdParamsSchema>;

export function imageRoutes(app: FastifyInstance, { store, builds, secrets }: GatewayContext): void {
  app.post<{ Body: BuildImageBody }>(`${API_PREFIX}/image/build`, {
    config: { access: "write" },
    schema: {
      tags: ["image"], summary: "Build an image from its spec, or reuse the one already built (same spec, same id)",
      body: BuildImageBodySchema, response: responses({ 200: ImageSchema, 202: ImageSchema }),
    },
  }, async (request, reply) => {
    let spec;
    try {
      spec = normalizeImageSpec(request.body.spec);
    } catch (err) {
      if (err instanceof ImageSpecError) throw new Beta9Error("IMAGE_SPEC_INVALID", { reason: err.message });
      throw err;
    }
    const { workspaceId } = request.auth;
    // Pull credentials name secrets of this workspace: a missing one fails now, naming it.
    const names = credentialSecretNames(spec);
    if (names.length > 0) {
      if (!secrets) throw new Beta9Error("SECRET_NOT_FOUND", { name: names[0]! });
      secrets.check(workspaceId, names);
    }
    // Files are read from this workspace's uploads only: a hash alone must not reach another's.
    for (const hash of copyObjects(spec)) {
      if (!(await store.objects.get(workspaceId, hash))) {
        throw new Beta9Error("IMAGE_SPEC_INVALID", { reason: `the files of a copy step (object ${hash}) were not uploaded to this workspace; upload them first (PUT /api/v1/object/${hash}; the SDKs do)` });
      }
    }
    // An image pulled with credentials is this workspace's own (its id covers the workspace).
    const image = await builds.request(workspaceId, imageId(spec, workspaceId), spec);
    return reply.code(image.status === "ready" ? 200 : 202).send(image);
  });

  app.get<{ Querystring: Static<typeof ListQuerySchema> }>(`${API_PREFIX}/image`, {
    config: { access: "read" },
    schema: { tags: ["image"], summary: "List the workspace's images", querystring: ListQuerySchema, response: responses({ 200: Items(ImageSchema) }) },
  }, async (request) => ({ items: await store.images.list(request.auth.workspaceId, toPage(request.query)) }));

  app.get<{ Params: IdParams }>(`${API_PREFIX}/image/:id`, {
    config: { access: "read" },
    schema: { tags: ["image"], summary: "Get an image", params: ImageIdParamsSchema, response: responses({ 200: ImageSchema }) },
  }, async (request) => found(await store.images.get(request.auth.workspaceId, request.params.id), "image", request.params.id));

  app.delete<{ Params: IdParams }>(`${API_PREFIX}/image/:id`, {
    config: { access: "write" },
    schema: {
      tags: ["image"], params: ImageIdParamsSchema,
      summary: "Stop using an image: it leaves the workspace's list and image quota, and its packed file goes once no workspace uses it",
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const { id } = request.params;
    found(await store.images.get(workspaceId, id), "image", id);
    // A live deployment would start containers from it later: stop that first.
    for (let offset = 0; ; offset += 1000) {
      const page = await store.deployments.list(workspaceId, { active: true, limit: 1000, offset });
      const stubs = await Promise.all([...new Set(page.map((d) => d.stubId))].map((stubId) => store.stubs.get(workspaceId, stubId)));
      const user = page.find((d) => stubs.find((s) => s?.id === d.stubId)?.config.imageId === id);
      if (user) {
        throw new Beta9Error("CONFLICT", {
          reason: `image ${id} is used by deployment ${user.name} v${user.version}; stop it first (beta9 deployment stop ${user.name})`,
        });
      }
      if (page.length < 1000) break;
    }
    await builds.delete(workspaceId, id);
    return reply.code(204).send();
  });

  app.get<{ Params: IdParams; Querystring: Static<typeof ContainerLogsQuerySchema> }>(`${API_PREFIX}/image/:id/logs`, {
    config: { access: "read" },
    schema: {
      tags: ["image"], summary: "The build log; with follow=true a text/event-stream of `log` events and a final `end` with the image",
      params: ImageIdParamsSchema, querystring: ContainerLogsQuerySchema, response: responses({ 200: Items(LogLineSchema) }),
    },
  }, async (request, reply) => {
    const { id } = request.params;
    const image = found(await store.images.get(request.auth.workspaceId, id), "image", id);
    if (request.query.follow !== "true") return { items: builds.logHistory(id) };
    streamEvents(request, reply, (emit, end) => {
      const unsubscribe = builds.subscribe(id, (e) => {
        if (e.kind === "logs") for (const line of e.lines) emit("log", line);
        else end(e.image);
      });
      for (const line of builds.logHistory(id)) emit("log", line);
      if (image.status !== "building") end(image);
      return unsubscribe;
    });
  });

  // Encapsulated: only these routes take raw bytes.
  app.register(async (scope) => {
    scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));

    scope.get<{ Params: IdParams }>(`${API_PREFIX}/image/:id/blob`, {
      config: { access: "worker" },
      schema: { tags: ["image"], summary: "The packed image (squashfs); header x-beta9-sha256 carries its hash", params: ImageIdParamsSchema },
    }, async (request, reply) => {
      // A machine serves one workspace: only images that workspace asked for.
      const image = found(request.auth.type === "machine"
        ? await store.images.get(request.auth.workspaceId, request.params.id)
        : await store.images.getAny(request.params.id), "image", request.params.id);
      if (image.status !== "ready" || !image.sha256) throw new Beta9Error("IMAGE_NOT_READY", { id: image.id, status: image.status });
      return reply.type("application/octet-stream").header("content-length", image.size).header("x-beta9-sha256", image.sha256)
        .send(builds.openBlob(image.id));
    });

    scope.put<{ Params: IdParams; Body: Readable }>(`${API_PREFIX}/image/:id/blob`, {
      config: { access: "worker" },
      schema: {
        tags: ["image"], summary: "Upload a built image (the builder worker); refused unless it hashes to x-beta9-sha256",
        params: ImageIdParamsSchema, headers: Type.Object({ "x-beta9-sha256": Type.String({ pattern: "^[a-f0-9]{64}$" }) }),
        response: responses({ 200: ImageSchema }),
      },
    }, async (request) => {
      const image = found(await store.images.getAny(request.params.id), "image", request.params.id);
      if (image.status !== "building") {
        request.body.resume();
        throw new Beta9Error("CONFLICT", { reason: `image ${image.id} is ${image.status}, not building; nothing to upload` });
      }
      // Images are shared by every workspace: a machine may upload only the build it was given.
      if (request.auth.type === "machine" && builds.builderOf(image.id) !== (await store.machines.getByToken(request.auth.id))?.id) {
        request.body.resume();
        throw new Beta9Error("AUTH_FORBIDDEN", { tokenType: "machine", action: `upload image ${image.id}, which it was not asked to build`, allowed: "the building worker's" });
      }
      return builds.upload(image.id, String(request.headers["x-beta9-sha256"]), request.body);
    });
  });
}
