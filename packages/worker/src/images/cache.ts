/**
 * The worker's image cache: packed images (one squashfs file per image id) fetched on first use,
 * mounted once, shared by every container that uses them, and evicted least-recently-used when
 * unused images take more than `maxBytes`. After a crash, construction cleans up: stale mounts
 * under the cache dir are unmounted, temp files deleted, and packed files already there are kept.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, rmdir, stat, utimes } from "node:fs/promises";
import { join, resolve } from "node:path";
import { unmountAllUnder } from "./mounts.js";
import { mountPacked, unmountPacked } from "./pack.js";

export interface ImageCacheOptions {
  dir: string;
  maxBytes: number;
  /** Writes the packed image to `destPath`, verifying its content hash; rejects on any problem. */
  fetch: (imageId: string, destPath: string) => Promise<void>;
}

export interface ImageLease {
  /** A read-only directory holding the image's root filesystem (an overlay lower dir). */
  lowerDir: string;
  /** Ends this use; idempotent. Resolves when any eviction it triggered is done (no need to wait). */
  release(): Promise<void>;
}

interface Entry {
  id: string;
  bytes: number;
  refs: number;
  lastUsed: number;
  /** Set while the file is fetched and mounted; settled once it is usable. */
  loading?: Promise<void>;
  mounted: boolean;
  /** Set while the entry is being unmounted and deleted. */
  evicting?: Promise<boolean>;
}

const ID = /^[a-f0-9]{16,64}$/;
const FILE = /^([a-f0-9]{16,64})\.sqfs$/;

export class ImageCache {
  private readonly dir: string;
  private readonly filesDir: string;
  private readonly mountsDir: string;
  private readonly entries = new Map<string, Entry>();
  /** Settles when start-up recovery is done (acquire waits for it itself). */
  readonly ready: Promise<void>;
  private clock = 0;
  private closed = false;
  private evictionRunning = false;
  /** Images fetched since construction (tests and metrics read it). */
  fetches = 0;
  /** The last eviction failure, if any (eviction runs in the background). */
  lastError: Error | undefined;

  constructor(private readonly options: ImageCacheOptions) {
    this.dir = resolve(options.dir);
    this.filesDir = join(this.dir, "images");
    this.mountsDir = join(this.dir, "mnt");
    this.ready = this.recover();
    this.ready.catch(() => {}); // surfaced by acquire()
  }

  private fileOf(id: string): string {
    return join(this.filesDir, `${id}.sqfs`);
  }
  private mountOf(id: string): string {
    return join(this.mountsDir, id);
  }

  /** Undo what a crashed process left: mounts, temp files, empty mount dirs; adopt packed files. */
  private async recover(): Promise<void> {
    await mkdir(this.filesDir, { recursive: true });
    await mkdir(this.mountsDir, { recursive: true });
    await unmountAllUnder(this.dir);
    for (const name of await readdir(this.mountsDir)) await rmdir(join(this.mountsDir, name)).catch(() => {});
    const adopted: { id: string; bytes: number; mtime: number }[] = [];
    for (const name of await readdir(this.filesDir)) {
      const match = FILE.exec(name);
      if (!match) {
        await rm(join(this.filesDir, name), { recursive: true, force: true }); // temp files of unfinished fetches
        continue;
      }
      const st = await stat(join(this.filesDir, name));
      adopted.push({ id: match[1]!, bytes: st.size, mtime: st.mtimeMs });
    }
    for (const a of adopted.sort((x, y) => x.mtime - y.mtime)) {
      this.entries.set(a.id, { id: a.id, bytes: a.bytes, refs: 0, lastUsed: ++this.clock, mounted: false });
    }
    await this.evict();
  }

  async acquire(imageId: string): Promise<ImageLease> {
    if (!ID.test(imageId)) throw new Error(`invalid image id "${imageId}"`);
    await this.ready;
    for (;;) {
      if (this.closed) throw new Error("the image cache is closed");
      let entry = this.entries.get(imageId);
      if (entry?.evicting) {
        await entry.evicting;
        continue; // evicted: start over with a fresh entry (or the kept one, if unmounting failed)
      }
      if (!entry) {
        entry = { id: imageId, bytes: 0, refs: 0, lastUsed: ++this.clock, mounted: false };
        this.entries.set(imageId, entry);
      }
      entry.refs++; // before any await: an entry with users is never evicted
      try {
        entry.loading ??= this.load(entry);
        await entry.loading;
      } catch (err) {
        entry.refs--;
        throw err;
      }
      entry.lastUsed = ++this.clock;
      // The file's mtime carries the LRU order across restarts (recovery sorts adopted files by it).
      const now = new Date();
      await utimes(this.fileOf(imageId), now, now).catch(() => {});
      await this.evict();
      return this.lease(entry);
    }
  }

  private lease(entry: Entry): ImageLease {
    let released = false;
    return {
      lowerDir: this.mountOf(entry.id),
      release: () => {
        if (released) return Promise.resolve();
        released = true;
        entry.refs--;
        entry.lastUsed = ++this.clock;
        return this.evict();
      },
    };
  }

  /** Fetches (if the file is not here yet) and mounts; on failure the entry is forgotten. */
  private async load(entry: Entry): Promise<void> {
    const file = this.fileOf(entry.id);
    try {
      let st = await stat(file).catch(() => undefined);
      if (!st) {
        await this.fetchTo(entry.id, file);
        st = await stat(file);
      }
      entry.bytes = st.size;
      try {
        await mountPacked(file, this.mountOf(entry.id));
      } catch (err) {
        // A file that does not mount is useless (damaged on disk?); the next acquire refetches it.
        await rm(file, { force: true });
        await unmountPacked(this.mountOf(entry.id)).catch(() => {});
        throw err;
      }
      entry.mounted = true;
    } catch (err) {
      if (this.entries.get(entry.id) === entry) this.entries.delete(entry.id);
      throw err;
    }
  }

  /** The fetcher writes a temp name; only a complete, verified file gets the real name. */
  private async fetchTo(id: string, file: string): Promise<void> {
    const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
    try {
      this.fetches++;
      await this.options.fetch(id, tmp);
      await rename(tmp, file);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Total bytes of packed files on disk. */
  totalBytes(): number {
    let total = 0;
    for (const e of this.entries.values()) total += e.bytes;
    return total;
  }

  /** Ids cached (mounted or not), least recently used first. */
  cachedIds(): string[] {
    return [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed).map((e) => e.id);
  }

  /** Removes unused images, least recently used first, until the total fits in maxBytes. */
  private async evict(): Promise<void> {
    if (this.evictionRunning || this.closed) return;
    this.evictionRunning = true;
    try {
      while (this.totalBytes() > this.options.maxBytes) {
        const victim = [...this.entries.values()]
          .filter((e) => e.refs === 0 && !e.evicting && (e.loading === undefined || e.mounted))
          .sort((a, b) => a.lastUsed - b.lastUsed)[0];
        if (!victim) return; // everything left is in use: over budget until something is released
        victim.evicting = this.remove(victim);
        if (!(await victim.evicting)) return; // could not unmount (still busy): try again on the next release
      }
    } catch (err) {
      this.lastError = err as Error; // eviction runs in the background: never an unhandled rejection
    } finally {
      this.evictionRunning = false;
    }
  }

  /** Unmounts and deletes one image; false (and the entry kept) if it cannot be unmounted. */
  private async remove(entry: Entry): Promise<boolean> {
    try {
      if (entry.mounted) await unmountPacked(this.mountOf(entry.id));
    } catch (err) {
      this.lastError = err as Error;
      delete entry.evicting;
      return false;
    }
    entry.mounted = false;
    this.entries.delete(entry.id);
    await rm(this.fileOf(entry.id), { force: true });
    return true;
  }

  /** Unmounts everything this cache mounted (busy mounts are detached); packed files stay. */
  async close(): Promise<void> {
    await this.ready.catch(() => {});
    this.closed = true;
    await Promise.allSettled([...this.entries.values()].flatMap((e) => [e.loading, e.evicting].filter(Boolean)));
    for (const entry of this.entries.values()) {
      if (!entry.mounted) continue;
      await unmountPacked(this.mountOf(entry.id), { lazy: true });
      entry.mounted = false;
    }
  }
}
