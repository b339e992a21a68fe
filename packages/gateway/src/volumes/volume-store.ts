/**
 * Named volumes of each workspace, kept beside their contents in the object store:
 *
 *   <root>/<workspace>/volumes/<name>/head.json            id, version, counts (small; read by lists)
 *   <root>/<workspace>/volumes/<name>/manifest-<N>.json    path → [sha256, size, mode, mtime] at version N
 *   <root>/<workspace>/blobs/<aa>/<sha256>                 contents (blobs.ts)
 *
 * A commit writes the next version's manifest, then replaces head.json by rename: a reader finds
 * the old version or the new one, never a mix, and a crash in between leaves the old version
 * (plus a stray manifest that start-up removes). Commits, creation and deletion of one workspace's
 * volumes take that workspace's lock, so per-file last-writer-wins is decided by commit order.
 * One gateway owns the data directory (gateway.pid), so an in-process lock is enough.
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Beta9Error, type VolumeChange, type VolumeInfo } from "@beta9/protocol";
import { checkQuota, type WorkspaceQuotas } from "../quotas.js";
import { VolumeBlobs, type StagedBlob } from "./blobs.js";
import { VolumeChunks } from "./chunks.js";
import { Manifest } from "./manifest.js";

const HEAD = "head.json";
const manifestFile = (version: number) => `manifest-${version}.json`;

export class VolumeStore {
  readonly blobs: VolumeBlobs;
  /** Pieces of large uploads, for resumable `cp` (chunks.ts). */
  readonly chunks: VolumeChunks;
  private readonly tmpDir: string;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly root: string, private readonly quotas: () => WorkspaceQuotas) {
    this.tmpDir = join(root, "tmp");
    this.blobs = new VolumeBlobs(root, this.tmpDir, quotas);
    this.chunks = new VolumeChunks(root, this.tmpDir, this.blobs, quotas);
  }

  /** Removes what interrupted uploads, commits and deletions left, and contents no volume names. */
  async init(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
    for (const workspaceId of await this.blobs.workspaces()) {
      if (workspaceId === "tmp") continue;
      for (const name of await this.names(workspaceId)) {
        const head = await this.get(workspaceId, name);
        if (!head) continue;
        for (const file of await readdir(this.dirOf(workspaceId, name))) {
          if (file !== HEAD && file !== manifestFile(head.version)) await rm(join(this.dirOf(workspaceId, name), file), { force: true });
        }
      }
    }
    await this.sweepAll();
  }

  /** `sweep` for every workspace that holds volume contents. */
  async sweepAll(): Promise<void> {
    for (const workspaceId of await this.blobs.workspaces()) if (workspaceId !== "tmp") await this.sweep(workspaceId);
  }

  /** Full collection for one workspace: every content no manifest names (and no upload awaits). */
  async sweep(workspaceId: string): Promise<number> {
    return this.withLock(workspaceId, async () => {
      const keep = await this.referenced(workspaceId);
      await this.chunks.expire(workspaceId);
      return this.blobs.sweep(workspaceId, (hash) => keep.has(hash));
    });
  }

  private volumesDir(workspaceId: string): string {
    return join(this.root, workspaceId, "volumes");
  }

  private dirOf(workspaceId: string, name: string): string {
    return join(this.volumesDir(workspaceId), name);
  }

  private async names(workspaceId: string): Promise<string[]> {
    return (await readdir(this.volumesDir(workspaceId)).catch(() => [] as string[])).sort();
  }

  async get(workspaceId: string, name: string): Promise<VolumeInfo | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dirOf(workspaceId, name), HEAD), "utf8")) as VolumeInfo;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
      throw err;
    }
  }

  async require(workspaceId: string, name: string): Promise<VolumeInfo> {
    const volume = await this.get(workspaceId, name);
    if (!volume) throw new Beta9Error("VOLUME_NOT_FOUND", { name });
    return volume;
  }

  async list(workspaceId: string): Promise<VolumeInfo[]> {
    const out: VolumeInfo[] = [];
    for (const name of await this.names(workspaceId)) {
      const volume = await this.get(workspaceId, name);
      if (volume) out.push(volume);
    }
    return out;
  }

  /** A new, empty volume (version 0). `ifMissing`: an existing one is returned instead of NAME_TAKEN. */
  async create(workspaceId: string, name: string, ifMissing = false): Promise<{ volume: VolumeInfo; created: boolean }> {
    return this.withLock(workspaceId, async () => {
      const existing = await this.get(workspaceId, name);
      if (existing) {
        if (ifMissing) return { volume: existing, created: false };
        throw new Beta9Error("NAME_TAKEN", { kind: "volume", name });
      }
      checkQuota(this.quotas(), "volumes", (await this.names(workspaceId)).length);
      const now = new Date().toISOString();
      const volume: VolumeInfo = { id: randomUUID(), name, version: 0, files: 0, bytes: 0, createdAt: now, updatedAt: now };
      // Built aside and renamed in, so a volume exists whole or not at all.
      const tmp = join(this.tmpDir, `create-${randomUUID()}`);
      await mkdir(tmp, { recursive: true });
      await writeDurably(join(tmp, manifestFile(0)), "{}");
      await writeDurably(join(tmp, HEAD), JSON.stringify(volume));
      await mkdir(this.volumesDir(workspaceId), { recursive: true });
      await rename(tmp, this.dirOf(workspaceId, name));
      return { volume, created: true };
    });
  }

  /** Removes the volume and every content only it named. */
  async delete(workspaceId: string, name: string): Promise<VolumeInfo> {
    return this.withLock(workspaceId, async () => {
      const volume = await this.require(workspaceId, name);
      const manifest = await this.readManifest(workspaceId, volume);
      const gone = join(this.tmpDir, `deleted-${randomUUID()}`);
      await mkdir(this.tmpDir, { recursive: true });
      await rename(this.dirOf(workspaceId, name), gone);
      await rm(gone, { recursive: true, force: true });
      const keep = await this.referenced(workspaceId);
      await this.blobs.collect(workspaceId, manifest.hashes(), (hash) => keep.has(hash));
      return volume;
    });
  }

  /** The volume and its manifest at its current version (the head names the manifest; a commit replacing both meanwhile is read again). */
  async manifest(workspaceId: string, name: string): Promise<{ volume: VolumeInfo; manifest: Manifest }> {
    // A commit may replace the head and remove the manifest it named between two reads: read again.
    for (let attempt = 0; ; attempt++) {
      const volume = await this.require(workspaceId, name);
      try {
        return { volume, manifest: await this.readManifest(workspaceId, volume) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 5) throw err;
      }
    }
  }

  /**
   * Applies `changes` as the next version. `staged`: uploads to put in place first (under the same
   * lock, so no collection can come between). `volumeId`: refuse (CONFLICT) if the volume was
   * deleted and created again since the writer read it. Every new content must be stored
   * (VOLUME_BLOB_MISSING lists what is not). Nothing is written unless all of it applies.
   */
  async commit(workspaceId: string, name: string, changes: readonly VolumeChange[], options: { volumeId?: string; staged?: StagedBlob[] } = {}): Promise<VolumeInfo> {
    const staged = [...(options.staged ?? [])];
    try {
      return await this.withLock(workspaceId, async () => {
        const { volume, manifest } = await this.manifest(workspaceId, name);
        if (options.volumeId !== undefined && options.volumeId !== volume.id) {
          throw new Beta9Error("CONFLICT", { reason: `volume ${name} was deleted (and maybe created again) since these changes were made; they were not committed` });
        }
        while (staged.length > 0) await this.blobs.finalize(staged.shift()!);
        const wanted = new Set(changes.flatMap((c) => ("hash" in c ? [c.hash] : [])));
        const missing: string[] = [];
        for (const hash of wanted) if (!(await this.blobs.has(workspaceId, hash))) missing.push(hash);
        if (missing.length > 0) throw new Beta9Error("VOLUME_BLOB_MISSING", { count: missing.length, hash: missing[0]! }, { missing: missing.slice(0, 1000) });
        const { dropped } = manifest.apply(changes, name);
        const next: VolumeInfo = { ...volume, version: volume.version + 1, files: manifest.size, bytes: manifest.bytes, updatedAt: new Date().toISOString() };
        const dir = this.dirOf(workspaceId, name);
        await writeDurably(join(dir, manifestFile(next.version)), JSON.stringify(manifest));
        await writeDurably(join(dir, HEAD), JSON.stringify(next));
        await rm(join(dir, manifestFile(volume.version)), { force: true });
        this.blobs.committed(workspaceId, wanted);
        if (dropped.length > 0) {
          const keep = await this.referenced(workspaceId);
          await this.blobs.collect(workspaceId, dropped, (hash) => keep.has(hash));
        }
        return next;
      });
    } finally {
      for (const s of staged) await this.blobs.discard(s);
    }
  }

  /** Stores an upload and records it as the workspace's pending content (a commit names it next). */
  async putBlob(staged: StagedBlob): Promise<void> {
    await this.withLock(staged.workspaceId, () => this.blobs.finalize(staged));
  }

  private async readManifest(workspaceId: string, volume: VolumeInfo): Promise<Manifest> {
    return Manifest.from(JSON.parse(await readFile(join(this.dirOf(workspaceId, volume.name), manifestFile(volume.version)), "utf8")));
  }

  /** Every hash the workspace's volumes name now (read from disk: no index to keep in memory). */
  private async referenced(workspaceId: string): Promise<Set<string>> {
    const keep = new Set<string>();
    for (const name of await this.names(workspaceId)) {
      const volume = await this.get(workspaceId, name);
      if (!volume) continue;
      for (const hash of (await this.readManifest(workspaceId, volume)).hashes()) keep.add(hash);
    }
    return keep;
  }

  private async withLock<T>(workspaceId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(workspaceId) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.then(() => undefined, () => undefined);
    this.locks.set(workspaceId, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(workspaceId) === tail) this.locks.delete(workspaceId);
    }
  }
}

/** Writes `data` to a temp file beside `path`, flushes it to disk, and renames it over `path`. */
export async function writeDurably(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
