/**
 * Volume contents on the gateway's disk, content-addressed per workspace:
 * `<root>/<workspace>/blobs/<aa>/<sha256>`. An upload streams into a temp file while it is hashed
 * and counted (never held in memory), and is renamed into place under its hash: a content is
 * stored once however often it is uploaded, and a reader sees a whole blob or none. Blobs are per
 * workspace so that storing a content proves nothing about another tenant's files.
 *
 * Quota: the bytes of a workspace's blobs (each distinct content once), counted from disk on first
 * use and kept up to date here; an upload reserves its declared length (or the room left) while it
 * streams, so concurrent uploads cannot overshoot together.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Beta9Error } from "@beta9/protocol";
import type { WorkspaceQuotas } from "../quotas.js";

/** An upload hashed into a temp file, not yet in place; `finalize` or `discard` it. */
export interface StagedBlob {
  workspaceId: string;
  hash: string;
  size: number;
  tmp: string;
  /** Bytes reserved against the quota until finalized or discarded. */
  reserved: number;
}

/** How long an uploaded, not yet committed content is safe from collection (a commit follows it). */
const PENDING_MS = 60 * 60 * 1000;

export class VolumeBlobs {
  private readonly bytes = new Map<string, number>();
  private readonly scanning = new Map<string, Promise<number>>();
  private readonly reserved = new Map<string, number>();
  /** workspace → hash → until when it is kept although no manifest names it. */
  private readonly pending = new Map<string, Map<string, number>>();

  constructor(readonly root: string, readonly tmpDir: string, private readonly quotas: () => WorkspaceQuotas) {}

  private dirOf(workspaceId: string): string {
    return join(this.root, workspaceId, "blobs");
  }

  pathOf(workspaceId: string, hash: string): string {
    return join(this.dirOf(workspaceId), hash.slice(0, 2), hash);
  }

  async has(workspaceId: string, hash: string): Promise<boolean> {
    return stat(this.pathOf(workspaceId, hash)).then((s) => s.isFile(), () => false);
  }

  open(workspaceId: string, hash: string): ReadStream {
    return createReadStream(this.pathOf(workspaceId, hash), { highWaterMark: 1 << 20 });
  }

  /** Bytes the workspace's blobs hold now (scanned from disk once, then tracked). */
  async usage(workspaceId: string): Promise<number> {
    const known = this.bytes.get(workspaceId);
    if (known !== undefined) return known;
    // One scan at a time per workspace, so that a blob renamed in meanwhile is not counted twice.
    let scanning = this.scanning.get(workspaceId);
    if (!scanning) {
      scanning = this.scan(workspaceId).then((blobs) => {
        const total = blobs.reduce((sum, b) => sum + b.size, 0);
        this.bytes.set(workspaceId, total);
        return total;
      }).finally(() => this.scanning.delete(workspaceId));
      this.scanning.set(workspaceId, scanning);
    }
    return scanning;
  }

  /**
   * Streams `body` into a temp file, hashing it. `declared`: the Content-Length, if any (the
   * quota is checked on it up front; a body without one is cut off where the room ends).
   */
  async stage(workspaceId: string, body: Readable, declared: number | undefined): Promise<StagedBlob> {
    const quotas = this.quotas();
    const held = (await this.usage(workspaceId)) + (this.reserved.get(workspaceId) ?? 0);
    if (held + (declared ?? 1) > quotas.volumeBytes) {
      body.resume();
      throw quotaError(held, quotas.volumeBytes, declared);
    }
    const reserve = declared ?? quotas.volumeBytes - held;
    this.reserve(workspaceId, reserve);
    const tmp = join(this.tmpDir, randomUUID());
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        size += chunk.length;
        if (size > reserve) {
          return callback(declared === undefined
            ? quotaError(held, quotas.volumeBytes, undefined)
            : new Beta9Error("BAD_REQUEST", { reason: `the body is longer than its Content-Length (${declared})` }));
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await mkdir(this.tmpDir, { recursive: true });
      await pipeline(body, meter, createWriteStream(tmp, { flags: "wx" }));
      await syncFile(tmp); // on disk before a manifest (fsynced too) can name it
      return { workspaceId, hash: hash.digest("hex"), size, tmp, reserved: reserve };
    } catch (err) {
      body.resume(); // drain what the client still sends, so that it can read the error
      this.reserve(workspaceId, -reserve);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Puts a staged blob in place (or drops it when that content is stored already) and keeps it
   * from collection for a while: the commit that names it comes next. Call under the workspace's lock.
   */
  async finalize(staged: StagedBlob): Promise<void> {
    const target = this.pathOf(staged.workspaceId, staged.hash);
    try {
      const before = await this.usage(staged.workspaceId);
      if (await this.has(staged.workspaceId, staged.hash)) {
        await rm(staged.tmp, { force: true });
      } else {
        await mkdir(join(target, ".."), { recursive: true });
        await rename(staged.tmp, target);
        this.bytes.set(staged.workspaceId, before + staged.size);
      }
      this.markPending(staged.workspaceId, staged.hash);
    } finally {
      this.reserve(staged.workspaceId, -staged.reserved);
      staged.reserved = 0;
    }
  }

  async discard(staged: StagedBlob): Promise<void> {
    this.reserve(staged.workspaceId, -staged.reserved);
    staged.reserved = 0;
    await rm(staged.tmp, { force: true });
  }

  /** Referenced now by a commit: the manifest keeps it from here on. */
  committed(workspaceId: string, hashes: Iterable<string>): void {
    const pending = this.pending.get(workspaceId);
    if (!pending) return;
    for (const hash of hashes) pending.delete(hash);
  }

  private markPending(workspaceId: string, hash: string): void {
    let pending = this.pending.get(workspaceId);
    if (!pending) this.pending.set(workspaceId, (pending = new Map()));
    pending.set(hash, Date.now() + PENDING_MS);
  }

  private isPending(workspaceId: string, hash: string): boolean {
    const until = this.pending.get(workspaceId)?.get(hash);
    return until !== undefined && until > Date.now();
  }

  /** Deletes the given blobs unless `keep` says a manifest still names them, or an upload awaits its commit. */
  async collect(workspaceId: string, hashes: Iterable<string>, keep: (hash: string) => boolean): Promise<number> {
    let freed = 0;
    for (const hash of hashes) {
      if (keep(hash) || this.isPending(workspaceId, hash)) continue;
      const path = this.pathOf(workspaceId, hash);
      const size = await stat(path).then((s) => s.size, () => undefined);
      if (size === undefined) continue;
      await unlink(path).catch(() => {});
      freed += size;
    }
    if (freed > 0 && this.bytes.has(workspaceId)) this.bytes.set(workspaceId, this.bytes.get(workspaceId)! - freed);
    return freed;
  }

  /** Every blob of the workspace that `keep` does not want (and no upload awaits): a full sweep. */
  async sweep(workspaceId: string, keep: (hash: string) => boolean): Promise<number> {
    const pending = this.pending.get(workspaceId);
    for (const [hash, until] of pending ?? []) if (until <= Date.now()) pending!.delete(hash);
    return this.collect(workspaceId, (await this.scan(workspaceId)).map((b) => b.hash), keep);
  }

  /** Workspaces that hold blobs (for the start-up sweep). */
  async workspaces(): Promise<string[]> {
    return readdir(this.root).catch(() => [] as string[]);
  }

  private async scan(workspaceId: string): Promise<{ hash: string; size: number }[]> {
    const out: { hash: string; size: number }[] = [];
    const dir = this.dirOf(workspaceId);
    for (const prefix of await readdir(dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(dir, prefix)).catch(() => [] as string[])) {
        const size = await stat(join(dir, prefix, name)).then((s) => s.size, () => undefined);
        if (size !== undefined && /^[a-f0-9]{64}$/.test(name)) out.push({ hash: name, size });
      }
    }
    return out;
  }

  private reserve(workspaceId: string, bytes: number): void {
    this.reserved.set(workspaceId, (this.reserved.get(workspaceId) ?? 0) + bytes);
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** 429 QUOTA_EXCEEDED for an upload that does not fit in what the workspace may still store. */
export function quotaError(held: number, limit: number, upload: number | undefined): Beta9Error {
  return new Beta9Error("QUOTA_EXCEEDED", {
    count: held, kind: "bytes of volume contents", limit,
    hint: `this upload${upload === undefined ? "" : ` (${upload} bytes)`} does not fit: remove files (beta9 rm VOLUME:PATH) or delete a volume; an operator can raise BETA9_QUOTA_VOLUME_BYTES`,
  });
}
