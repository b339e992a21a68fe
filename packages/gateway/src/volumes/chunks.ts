/**
 * Pieces of a large upload, kept until the file they make is assembled, so that a broken
 * `beta9 cp` resumes: the client hashes its file in chunks, asks which are stored, sends only the
 * others, then asks for the file to be assembled from them (one commit). Content-addressed per
 * workspace, `<root>/<workspace>/chunks/<aa>/<sha256>`: a chunk is checked against the hash its
 * upload names (a tenant cannot store bytes under another content's name) and written whole or
 * not at all. Chunks nobody assembled expire after a day (`expire`, run by the volume sweep).
 *
 * Quota: a chunk counts against the workspace's volume bytes while it is held (what the blobs hold
 * plus the chunks), checked on its declared length; each is at most MAX_CHUNK_BYTES, so uploads
 * racing each other overshoot by a few chunks at most.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Beta9Error } from "@beta9/protocol";
import type { WorkspaceQuotas } from "../quotas.js";
import { quotaError, type VolumeBlobs } from "./blobs.js";

export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Chunks one assembled file may name (with 64 MiB chunks: files up to 640 GB). */
export const MAX_CHUNKS_PER_FILE = 10_000;
const EXPIRE_MS = 24 * 60 * 60 * 1000;
/** Chunks one workspace may hold at once (tiny chunks would otherwise cost an inode each, unbounded). */
export const MAX_CHUNKS_HELD = 100_000;

export class VolumeChunks {
  private readonly bytes = new Map<string, number>();
  private readonly counts = new Map<string, number>();

  constructor(readonly root: string, readonly tmpDir: string, private readonly blobs: VolumeBlobs, private readonly quotas: () => WorkspaceQuotas) {}

  private dirOf(workspaceId: string): string {
    return join(this.root, workspaceId, "chunks");
  }

  pathOf(workspaceId: string, hash: string): string {
    return join(this.dirOf(workspaceId), hash.slice(0, 2), hash);
  }

  async has(workspaceId: string, hash: string): Promise<boolean> {
    return stat(this.pathOf(workspaceId, hash)).then((s) => s.isFile(), () => false);
  }

  /** Bytes the workspace's chunks hold (scanned once, then tracked). */
  async usage(workspaceId: string): Promise<number> {
    const known = this.bytes.get(workspaceId);
    if (known !== undefined) return known;
    const chunks = await this.scan(workspaceId);
    const total = chunks.reduce((sum, c) => sum + c.size, 0);
    this.bytes.set(workspaceId, total);
    this.counts.set(workspaceId, chunks.length);
    return total;
  }

  private track(workspaceId: string, delta: number, count: number): void {
    if (this.bytes.has(workspaceId)) this.bytes.set(workspaceId, Math.max(0, this.bytes.get(workspaceId)! + delta));
    if (this.counts.has(workspaceId)) this.counts.set(workspaceId, Math.max(0, this.counts.get(workspaceId)! + count));
  }

  /** Stores `body` as the chunk `hash` (streamed, hashed, checked); a chunk stored already is not written again. */
  async put(workspaceId: string, hash: string, body: Readable, declared: number | undefined): Promise<{ hash: string; size: number }> {
    if (declared === undefined || !Number.isSafeInteger(declared) || declared > MAX_CHUNK_BYTES) {
      body.resume();
      throw new Beta9Error("BAD_REQUEST", { reason: `a chunk needs a Content-Length of at most ${MAX_CHUNK_BYTES} bytes` });
    }
    const limit = this.quotas().volumeBytes;
    const held = (await this.blobs.usage(workspaceId)) + (await this.usage(workspaceId));
    if (held + declared > limit) {
      body.resume();
      throw quotaError(held, limit, declared);
    }
    const count = this.counts.get(workspaceId) ?? 0;
    if (count >= MAX_CHUNKS_HELD) {
      body.resume();
      throw new Beta9Error("QUOTA_EXCEEDED", { count, kind: "chunks of unfinished uploads", limit: MAX_CHUNKS_HELD, hint: "finish or abandon uploads (chunks expire after a day)" });
    }
    const tmp = join(this.tmpDir, `chunk-${randomUUID()}`);
    const digest = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        size += chunk.length;
        if (size > declared) return callback(new Beta9Error("BAD_REQUEST", { reason: `the body is longer than its Content-Length (${declared})` }));
        digest.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await mkdir(this.tmpDir, { recursive: true });
      await pipeline(body, meter, createWriteStream(tmp, { flags: "wx" }));
      const actual = digest.digest("hex");
      if (actual !== hash) throw new Beta9Error("OBJECT_HASH_MISMATCH", { actual, expected: hash });
      const target = this.pathOf(workspaceId, hash);
      if (await this.has(workspaceId, hash)) return { hash, size };
      await this.usage(workspaceId);
      await mkdir(join(target, ".."), { recursive: true });
      await rename(tmp, target);
      this.track(workspaceId, size, 1);
      return { hash, size };
    } catch (err) {
      body.resume();
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** QUOTA_EXCEEDED now, before any chunk is sent, when a file of `size` bytes cannot fit. */
  async checkRoom(workspaceId: string, size: number): Promise<void> {
    const limit = this.quotas().volumeBytes;
    const held = (await this.blobs.usage(workspaceId)) + (await this.usage(workspaceId));
    if (held + size > limit) throw quotaError(held, limit, size);
  }

  /** The hashes of `hashes` that are not stored. */
  async missing(workspaceId: string, hashes: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const hash of new Set(hashes)) if (!(await this.has(workspaceId, hash))) out.push(hash);
    return out;
  }

  /** The chunks' bytes one after the other, read as they are sent on (never held whole). */
  concat(workspaceId: string, hashes: readonly string[]): Readable {
    const paths = hashes.map((hash) => this.pathOf(workspaceId, hash));
    return Readable.from((async function* () {
      for (const path of paths) yield* createReadStream(path, { highWaterMark: 1 << 20 });
    })(), { objectMode: false });
  }

  /** Drops chunks a file was assembled from (another upload still needing one sends it again). */
  async drop(workspaceId: string, hashes: Iterable<string>): Promise<void> {
    for (const hash of new Set(hashes)) {
      const path = this.pathOf(workspaceId, hash);
      const size = await stat(path).then((s) => s.size, () => undefined);
      if (size === undefined) continue;
      await unlink(path).catch(() => {});
      this.track(workspaceId, -size, -1);
    }
  }

  /** Removes chunks older than a day: uploads abandoned and never resumed. */
  async expire(workspaceId: string, now = Date.now()): Promise<number> {
    let freed = 0;
    let gone = 0;
    for (const chunk of await this.scan(workspaceId)) {
      if (now - chunk.mtimeMs < EXPIRE_MS) continue;
      await unlink(chunk.path).catch(() => {});
      freed += chunk.size;
      gone += 1;
    }
    this.track(workspaceId, -freed, -gone);
    return freed;
  }

  private async scan(workspaceId: string): Promise<{ path: string; size: number; mtimeMs: number }[]> {
    const out: { path: string; size: number; mtimeMs: number }[] = [];
    const dir = this.dirOf(workspaceId);
    for (const prefix of await readdir(dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(dir, prefix)).catch(() => [] as string[])) {
        const s = await stat(join(dir, prefix, name)).catch(() => undefined);
        if (s?.isFile() && /^[a-f0-9]{64}$/.test(name)) out.push({ path: join(dir, prefix, name), size: s.size, mtimeMs: s.mtimeMs });
      }
    }
    return out;
  }
}
