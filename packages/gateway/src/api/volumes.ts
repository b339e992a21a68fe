/**
 * Volumes over HTTP. Tenants: create, list, delete, `ls`, and files in and out (streamed both
 * ways; an upload is one commit). Workers (`/worker/volume/:workspaceId/…`): fetch a volume's
 * manifest when a container mounts it (created on first mount), fetch contents by hash, upload
 * changed files, and commit them. A machine's worker reaches only its own workspace's volumes.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, Sha256Schema, VolumeChangeSchema, VolumeEntrySchema, VolumeInfoSchema, VolumeNameSchema, type VolumeInfo,
} from "@beta9/protocol";
import { DEFAULT_QUOTAS } from "../quotas.js";
import { checkedPath } from "../volumes/manifest.js";
import { VolumeStore } from "../volumes/volume-store.js";
import { volumeChunkRoute, volumeUploadRoutes } from "./volume-uploads.js";
import { Items, responses, type GatewayContext } from "./common.js";

const V = `${API_PREFIX}/volume`;
const W = `${API_PREFIX}/worker/volume/:workspaceId`;
const tags = ["volume"];

const NameParams = Type.Object({ name: VolumeNameSchema }, { additionalProperties: false });
const WorkerParams = Type.Object({ workspaceId: Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$" }) }, { additionalProperties: false });
const WorkerNameParams = Type.Object({ workspaceId: WorkerParams.properties.workspaceId, name: VolumeNameSchema }, { additionalProperties: false });
const WorkerBlobParams = Type.Object({ workspaceId: WorkerParams.properties.workspaceId, hash: Sha256Schema }, { additionalProperties: false });
const Bool = Type.Union([Type.Literal("true"), Type.Literal("false")]);
const PathQuery = Type.Object({ path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });
const LsQuery = Type.Object({ path: Type.Optional(Type.String({ maxLength: 4096 })), recursive: Type.Optional(Bool) }, { additionalProperties: false });
const PutQuery = Type.Object({
  path: PathQuery.properties.path,
  mode: Type.Optional(Type.String({ pattern: "^[0-7]{3,4}$" })),
  mtime: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$", description: "Unix ms" })),
}, { additionalProperties: false });
const RemoveQuery = Type.Object({ path: PathQuery.properties.path, recursive: Type.Optional(Bool) }, { additionalProperties: false });
const MountQuery = Type.Object({
  have: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9-]{1,64}:[0-9]{1,15}$", description: "VOLUME_ID:VERSION the worker holds already" })),
}, { additionalProperties: false });
const CommitBody = Type.Object({ volumeId: Type.String({ maxLength: 64 }), changes: Type.Array(VolumeChangeSchema, { maxItems: 20_000 }) }, { additionalProperties: false });
const PutAnswer = Type.Object({ path: Type.String(), sha256: Type.String(), size: Type.Integer(), version: Type.Integer() });

type Name = Static<typeof NameParams>;
type WorkerName = Static<typeof WorkerNameParams>;

/** The Content-Length of an upload, if it sent one. */
function declaredLength(request: FastifyRequest): number | undefined {
  const raw = request.headers["content-length"];
  return raw === undefined ? undefined : Number(raw);
}

function requireOctets(request: FastifyRequest): void {
  if (!request.headers["content-type"]?.startsWith("application/octet-stream")) {
    (request.body as Readable | undefined)?.resume?.();
    throw new Beta9Error("UNSUPPORTED_MEDIA_TYPE", { contentType: String(request.headers["content-type"] ?? "(none)"), expected: "application/octet-stream" });
  }
}

export function volumeRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const volumes = ctx.volumes ?? new VolumeStore(join(ctx.objects.dir, "volumes"), () => ctx.quotas ?? DEFAULT_QUOTAS);

  /** The workspace a worker route may touch: any existing one for worker tokens, only its own for a machine's. */
  async function workerWorkspace(request: FastifyRequest<{ Params: { workspaceId: string } }>): Promise<string> {
    const { workspaceId } = request.params;
    const visible = request.auth.type === "machine" ? workspaceId === request.auth.workspaceId : (await ctx.store.workspaces.get(workspaceId)) !== undefined;
    if (!visible) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "workspace", id: workspaceId });
    return workspaceId;
  }

  app.post<{ Body: Name }>(V, {
    config: { access: "write" },
    schema: { tags, summary: "Create an empty volume", body: NameParams, response: responses({ 201: VolumeInfoSchema }) },
  }, async (request, reply) => reply.code(201).send((await volumes.create(request.auth.workspaceId, request.body.name)).volume));

  app.get(V, {
    config: { access: "read" },
    schema: { tags, summary: "The workspace's volumes, by name", response: responses({ 200: Items(VolumeInfoSchema) }) },
  }, async (request) => ({ items: await volumes.list(request.auth.workspaceId) }));

  app.get<{ Params: Name }>(`${V}/:name`, {
    config: { access: "read" },
    schema: { tags, summary: "A volume: its version, files and bytes", params: NameParams, response: responses({ 200: VolumeInfoSchema }) },
  }, async (request) => volumes.require(request.auth.workspaceId, request.params.name));

  app.delete<{ Params: Name }>(`${V}/:name`, {
    config: { access: "write" },
    schema: { tags, summary: "Delete a volume and its files", params: NameParams, response: responses({ 200: VolumeInfoSchema }) },
  }, async (request) => volumes.delete(request.auth.workspaceId, request.params.name));

  app.get<{ Params: Name; Querystring: Static<typeof LsQuery> }>(`${V}/:name/ls`, {
    config: { access: "read" },
    schema: {
      tags, summary: "What is at a path: a directory's children (recursive=true: every file below), or the file",
      params: NameParams, querystring: LsQuery, response: responses({ 200: Items(VolumeEntrySchema) }),
    },
  }, async (request) => {
    const { name } = request.params;
    const path = checkedPath(request.query.path ?? "", true);
    const { manifest } = await volumes.manifest(request.auth.workspaceId, name);
    const items = manifest.list(path, request.query.recursive === "true");
    if (!items) throw new Beta9Error("VOLUME_PATH_NOT_FOUND", { name, path: path || "." });
    return { items };
  });

  app.delete<{ Params: Name; Querystring: Static<typeof RemoveQuery> }>(`${V}/:name/file`, {
    config: { access: "write" },
    schema: {
      tags, summary: "Remove a file, or a directory and everything below it (recursive=true)", params: NameParams, querystring: RemoveQuery,
      response: responses({ 200: Type.Object({ removed: Type.Integer(), version: Type.Integer() }) }),
    },
  }, async (request) => {
    const { name } = request.params;
    const recursive = request.query.recursive === "true";
    const path = checkedPath(request.query.path, recursive);
    const { manifest } = await volumes.manifest(request.auth.workspaceId, name);
    const self = manifest.get(path) ? 1 : 0;
    const inside = manifest.isDir(path) ? (manifest.list(path, true) ?? []).length : 0;
    const below = self + inside;
    if (below === 0 && !(path === "" && recursive)) throw new Beta9Error("VOLUME_PATH_NOT_FOUND", { name, path });
    // An empty directory goes without -r (rmdir); one with entries below needs it.
    if (inside > 0 && !recursive) throw new Beta9Error("CONFLICT", { reason: `${path} in volume ${name} is a directory that is not empty; remove it with recursive=true (beta9 rm -r)` });
    const volume = await volumes.commit(request.auth.workspaceId, name, [{ path, delete: true, recursive }]);
    return { removed: below, version: volume.version };
  });

  volumeUploadRoutes(app, volumes);

  app.register(async (scope) => {
    // Only these routes take raw bytes; everything else stays JSON-only.
    scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));
    volumeChunkRoute(scope, volumes, { requireOctets, declaredLength });

    scope.get<{ Params: Name; Querystring: Static<typeof PathQuery> }>(`${V}/:name/file`, {
      config: { access: "read" },
      schema: { tags, summary: "A file's bytes (streamed; X-Beta9-Sha256, -Mode and -Mtime describe it)", params: NameParams, querystring: PathQuery },
    }, async (request, reply) => {
      const { name } = request.params;
      const path = checkedPath(request.query.path);
      for (let attempt = 0; ; attempt++) {
        const { manifest } = await volumes.manifest(request.auth.workspaceId, name);
        const entry = manifest.file(path);
        if (!entry) {
          const link = manifest.get(path)?.[4];
          if (typeof link === "object") throw new Beta9Error("CONFLICT", { reason: `${path} in volume ${name} is a symlink to ${JSON.stringify(link.link)}; links are kept as links, never followed (beta9 ls shows them)` });
          if (manifest.isDir(path)) throw new Beta9Error("CONFLICT", { reason: `${path} in volume ${name} is a directory; list it (beta9 ls ${name}:${path}) or copy it with beta9 cp` });
          throw new Beta9Error("VOLUME_PATH_NOT_FOUND", { name, path });
        }
        // Opened before answering: a commit that replaces the file meanwhile cannot cut this read short.
        const handle = await open(volumes.blobs.pathOf(request.auth.workspaceId, entry[0]), "r").catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT" && attempt < 3) return undefined; // replaced and collected between the two reads
          throw err;
        });
        if (!handle) continue;
        return reply.type("application/octet-stream").header("content-length", entry[1]).header("x-beta9-sha256", entry[0])
          .header("x-beta9-mode", entry[2].toString(8)).header("x-beta9-mtime", String(entry[3]))
          .send(handle.createReadStream({ highWaterMark: 1 << 20 }));
      }
    });

    scope.put<{ Params: Name; Querystring: Static<typeof PutQuery> }>(`${V}/:name/file`, {
      config: { access: "write" },
      schema: {
        tags, summary: "Upload a file (application/octet-stream, streamed); it replaces the path whole, as one commit",
        params: NameParams, querystring: PutQuery, response: responses({ 200: PutAnswer }),
      },
    }, async (request) => {
      const { name } = request.params;
      const { workspaceId } = request.auth;
      const body = request.body as Readable;
      requireOctets(request);
      let path: string;
      try {
        path = checkedPath(request.query.path);
        await volumes.require(workspaceId, name);
      } catch (err) {
        body.resume();
        throw err;
      }
      const staged = await volumes.blobs.stage(workspaceId, body, declaredLength(request));
      const mode = request.query.mode === undefined ? 0o644 : parseInt(request.query.mode, 8) & 0o777;
      const mtime = request.query.mtime === undefined ? Date.now() : Number(request.query.mtime);
      const volume = await volumes.commit(workspaceId, name, [{ path, hash: staged.hash, size: staged.size, mode, mtime }], { staged: [staged] });
      return { path, sha256: staged.hash, size: staged.size, version: volume.version };
    });

    scope.get<{ Params: Static<typeof WorkerBlobParams> }>(`${W}/blob/:hash`, {
      config: { access: "worker" },
      schema: { tags: ["worker"], summary: "A volume content by its sha256, for a worker materialising a volume", params: WorkerBlobParams },
    }, async (request, reply) => {
      const workspaceId = await workerWorkspace(request);
      const handle = await open(volumes.blobs.pathOf(workspaceId, request.params.hash), "r").catch(() => undefined);
      if (!handle) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "volume content", id: request.params.hash });
      const { size } = await handle.stat();
      return reply.type("application/octet-stream").header("content-length", size).send(handle.createReadStream({ highWaterMark: 1 << 20 }));
    });

    scope.post<{ Params: Static<typeof WorkerParams> }>(`${W}/blob`, {
      config: { access: "worker" },
      schema: {
        tags: ["worker"], summary: "Upload a changed file's content (hashed by the gateway); a commit naming it follows",
        params: WorkerParams, response: responses({ 200: Type.Object({ hash: Type.String(), size: Type.Integer() }) }),
      },
    }, async (request) => {
      const body = request.body as Readable;
      requireOctets(request);
      const workspaceId = await workerWorkspace(request).catch((err: unknown) => {
        body.resume();
        throw err;
      });
      const staged = await volumes.blobs.stage(workspaceId, body, declaredLength(request));
      try {
        await volumes.putBlob(staged);
      } catch (err) {
        await volumes.blobs.discard(staged);
        throw err;
      }
      return { hash: staged.hash, size: staged.size };
    });
  });

  app.post<{ Params: WorkerName; Querystring: Static<typeof MountQuery> }>(`${W}/:name/mount`, {
    config: { access: "worker" },
    schema: {
      tags: ["worker"], summary: "The volume a container mounts (created when missing) and its manifest, unless the worker has that version (have=N)",
      params: WorkerNameParams, querystring: MountQuery,
    },
  }, async (request) => {
    const workspaceId = await workerWorkspace(request);
    const { name } = request.params;
    await volumes.create(workspaceId, name, true);
    const { volume, manifest } = await volumes.manifest(workspaceId, name);
    const same = request.query.have === `${volume.id}:${volume.version}`;
    return { id: volume.id, name, version: volume.version, ...(!same && { files: manifest.toJSON() }) };
  });

  app.post<{ Params: WorkerName; Body: Static<typeof CommitBody> }>(`${W}/:name/commit`, {
    config: { access: "worker" },
    schema: {
      tags: ["worker"], summary: "Commit what a container changed: per file, last writer wins; every new content must be uploaded first",
      params: WorkerNameParams, body: CommitBody, response: responses({ 200: VolumeInfoSchema }),
    },
  }, async (request): Promise<VolumeInfo> => {
    const workspaceId = await workerWorkspace(request);
    return volumes.commit(workspaceId, request.params.name, request.body.changes, { volumeId: request.body.volumeId });
  });
}
