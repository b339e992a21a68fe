/**
 * Uploads that survive a broken connection, and entries that are not file contents: what
 * `beta9 cp` uses beside the one-shot `PUT …/file`.
 *
 * - `POST …/upload/check`: which of a file's chunks (and whether its whole content) the workspace
 *   stores already; `PUT …/chunk/:hash` sends one; `POST …/assemble` makes the file from them, as
 *   one commit. A `cp` broken half-way sends, the next time, only the chunks that never arrived.
 * - `POST …/changes`: a batch of changes in one commit: symlinks (their text: never followed),
 *   directories kept for themselves (empty ones), removals, and files whose content the workspace
 *   stores already (a whole-file hash `check` found), so that nothing is sent twice.
 */
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, Sha256Schema, VolumeChangeSchema, VolumeInfoSchema, VolumeNameSchema } from "@beta9/protocol";
import { MAX_CHUNKS_PER_FILE } from "../volumes/chunks.js";
import { checkedPath } from "../volumes/manifest.js";
import type { VolumeStore } from "../volumes/volume-store.js";
import { responses } from "./common.js";

const V = `${API_PREFIX}/volume`;
const tags = ["volume"];

const NameParams = Type.Object({ name: VolumeNameSchema }, { additionalProperties: false });
const ChunkParams = Type.Object({ name: VolumeNameSchema, hash: Sha256Schema }, { additionalProperties: false });
const Hashes = Type.Array(Sha256Schema, { maxItems: MAX_CHUNKS_PER_FILE });
const CheckBody = Type.Object({
  sha256: Type.Optional(Sha256Schema),
  chunks: Hashes,
  size: Type.Optional(Type.Integer({ minimum: 0, description: "the file's bytes: a file that cannot fit the quota is refused before any chunk is sent" })),
}, { additionalProperties: false });
const AssembleBody = Type.Object({
  path: Type.String({ minLength: 1, maxLength: 4096 }),
  size: Type.Integer({ minimum: 0 }),
  sha256: Type.Optional(Sha256Schema),
  chunks: Hashes,
  mode: Type.Integer({ minimum: 0, maximum: 0o777 }),
  mtime: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false });
const ChangesBody = Type.Object({ changes: Type.Array(VolumeChangeSchema, { maxItems: 10_000 }) }, { additionalProperties: false });
const PutAnswer = Type.Object({ path: Type.String(), sha256: Type.String(), size: Type.Integer(), version: Type.Integer() });

interface Helpers {
  requireOctets(request: FastifyRequest): void;
  declaredLength(request: FastifyRequest): number | undefined;
}

/** The JSON routes (registered outside the scope that takes raw bytes, so that they stay JSON-only). */
export function volumeUploadRoutes(app: FastifyInstance, volumes: VolumeStore): void {
  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof CheckBody> }>(`${V}/:name/upload/check`, {
    config: { access: "write" },
    schema: {
      tags, summary: "Which of a file's chunks are not stored yet, and whether its whole content is (then nothing needs sending)",
      params: NameParams, body: CheckBody,
      response: responses({ 200: Type.Object({ stored: Type.Boolean(), missing: Type.Array(Type.String()) }) }),
    },
  }, async (request) => {
    const { workspaceId } = request.auth;
    await volumes.require(workspaceId, request.params.name);
    const { sha256, chunks, size } = request.body;
    const stored = sha256 !== undefined && (await volumes.blobs.has(workspaceId, sha256));
    if (!stored && size !== undefined) await volumes.chunks.checkRoom(workspaceId, size);
    return { stored, missing: stored ? [] : await volumes.chunks.missing(workspaceId, chunks) };
  });

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AssembleBody> }>(`${V}/:name/assemble`, {
    config: { access: "write" },
    schema: {
      tags, summary: "Make a file from stored chunks (in order) and commit it at path; the chunks are dropped after",
      params: NameParams, body: AssembleBody, response: responses({ 200: PutAnswer }),
    },
  }, async (request) => {
    const { workspaceId } = request.auth;
    const { name } = request.params;
    const { chunks, size, sha256, mode, mtime } = request.body;
    const path = checkedPath(request.body.path);
    await volumes.require(workspaceId, name);
    const missing = await volumes.chunks.missing(workspaceId, chunks);
    if (missing.length > 0) throw new Beta9Error("VOLUME_BLOB_MISSING", { count: missing.length, hash: missing[0]! }, { missing });
    // Streamed from the chunk files into a new blob (hashed, counted against the quota as any upload).
    const staged = await volumes.blobs.stage(workspaceId, volumes.chunks.concat(workspaceId, chunks), size);
    if (staged.size !== size || (sha256 !== undefined && staged.hash !== sha256)) {
      await volumes.blobs.discard(staged);
      throw new Beta9Error("OBJECT_HASH_MISMATCH", { actual: `${staged.hash} (${staged.size} bytes)`, expected: `${sha256 ?? "?"} (${size} bytes)` });
    }
    const volume = await volumes.commit(workspaceId, name, [{ path, hash: staged.hash, size, mode, mtime }], { staged: [staged] });
    await volumes.chunks.drop(workspaceId, chunks);
    return { path, sha256: staged.hash, size, version: volume.version };
  });

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ChangesBody> }>(`${V}/:name/changes`, {
    config: { access: "write" },
    schema: {
      tags, summary: "Commit symlinks, directories, removals and files whose content is stored already, as one version",
      params: NameParams, body: ChangesBody, response: responses({ 200: VolumeInfoSchema }),
    },
  }, async (request) => volumes.commit(request.auth.workspaceId, request.params.name, request.body.changes));
}

/** `PUT …/chunk/:hash`: registered in the scope whose parser hands raw bodies over as streams. */
export function volumeChunkRoute(app: FastifyInstance, volumes: VolumeStore, h: Helpers): void {
  app.put<{ Params: Static<typeof ChunkParams> }>(`${V}/:name/chunk/:hash`, {
    config: { access: "write" },
    schema: {
      tags, summary: "Upload one chunk of a large file (application/octet-stream; its sha256 must be :hash)",
      params: ChunkParams, response: responses({ 200: Type.Object({ hash: Type.String(), size: Type.Integer() }) }),
    },
  }, async (request) => {
    const body = request.body as Readable;
    h.requireOctets(request);
    await volumes.require(request.auth.workspaceId, request.params.name).catch((err: unknown) => {
      body.resume();
      throw err;
    });
    return volumes.chunks.put(request.auth.workspaceId, request.params.hash, body, h.declaredLength(request));
  });
}
