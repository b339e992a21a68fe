/**
 * A volume's manifest in memory: path → [sha256, size, mode, mtime], plus the derived directory
 * tree and hash reference counts, so that applying a commit costs O(changes × depth) rather than
 * a scan of every file per change. Directories exist only through the files below them.
 *
 * Commit semantics (what `apply` does), per path, last writer wins:
 * - a new content replaces the file at that path whole (the bytes are a stored blob: never torn);
 * - a file where a directory is needed (`a` when `a/b` arrives) is replaced by the directory, and
 *   a directory where a file arrives is replaced by the file, with everything below it;
 * - a removal of a path that is no longer there is not an error (another writer got there first).
 */
import { Beta9Error, MAX_VOLUME_FILES, volumePath, VolumePathError, type ManifestEntry, type VolumeChange, type VolumeEntry } from "@beta9/protocol";

export class Manifest {
  private readonly files = new Map<string, ManifestEntry>();
  /** Directory path → number of files below it (any depth). The root ("") is implicit. */
  private readonly dirs = new Map<string, number>();
  private readonly refs = new Map<string, number>();
  private total = 0;

  static from(record: Record<string, ManifestEntry>): Manifest {
    const manifest = new Manifest();
    for (const [path, entry] of Object.entries(record)) manifest.add(path, entry);
    return manifest;
  }

  get size(): number {
    return this.files.size;
  }

  get bytes(): number {
    return this.total;
  }

  get(path: string): ManifestEntry | undefined {
    return this.files.get(path);
  }

  isDir(path: string): boolean {
    return path === "" || this.dirs.has(path);
  }

  /** Whether any file holds this content. */
  references(hash: string): boolean {
    return this.refs.has(hash);
  }

  hashes(): IterableIterator<string> {
    return this.refs.keys();
  }

  toJSON(): Record<string, ManifestEntry> {
    return Object.fromEntries(this.files);
  }

  /**
   * Applies `changes` in order (see the file's comment). Returns the hashes no file of this
   * manifest references any more (candidates for collection). Throws VOLUME_PATH_INVALID for a bad
   * path (before changing anything) and QUOTA_EXCEEDED past MAX_VOLUME_FILES (the caller drops
   * this manifest then: nothing is written).
   */
  apply(changes: readonly VolumeChange[], volumeName: string, maxFiles = MAX_VOLUME_FILES): { dropped: string[]; changed: number } {
    const checked = changes.map((change) => ({ ...change, path: checkedPath(change.path, "delete" in change) }));
    const dropped = new Set<string>();
    let changed = 0;
    for (const change of checked) {
      if ("delete" in change) {
        changed += this.removeTree(change.path, change.recursive === true, dropped);
        continue;
      }
      const { path } = change;
      // A file on the way down becomes a directory: the newer writer wins.
      for (const dir of ancestors(path)) if (this.files.has(dir)) this.remove(dir, dropped);
      if (this.dirs.has(path)) this.removeTree(path, true, dropped);
      const old = this.files.get(path);
      if (old) this.remove(path, dropped);
      this.add(path, [change.hash, change.size, change.mode & 0o777, change.mtime]);
      changed += 1;
    }
    if (this.files.size > maxFiles) {
      throw new Beta9Error("QUOTA_EXCEEDED", {
        count: this.files.size, kind: `files in volume ${volumeName} after this commit`, limit: maxFiles, hint: "keep fewer, larger files (an archive) or spread them over volumes",
      });
    }
    return { dropped: [...dropped].filter((hash) => !this.refs.has(hash)), changed };
  }

  /**
   * What `ls` shows at `dir`: its direct children (directories with the bytes below them), or with
   * `recursive` every file below it; a file path lists that file. Undefined: nothing is there.
   */
  list(dir: string, recursive = false): VolumeEntry[] | undefined {
    const file = this.files.get(dir);
    if (file) return [fileEntry(dir, file)];
    if (!this.isDir(dir)) return undefined;
    const prefix = dir === "" ? "" : `${dir}/`;
    const out = new Map<string, VolumeEntry>();
    for (const [path, entry] of this.files) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (recursive || slash === -1) {
        out.set(path, fileEntry(path, entry));
        continue;
      }
      const child = prefix + rest.slice(0, slash);
      const seen = out.get(child);
      if (seen) seen.size += entry[1];
      else out.set(child, { path: child, type: "dir", size: entry[1] });
    }
    return [...out.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  private add(path: string, entry: ManifestEntry): void {
    this.files.set(path, entry);
    this.total += entry[1];
    this.refs.set(entry[0], (this.refs.get(entry[0]) ?? 0) + 1);
    for (const dir of ancestors(path)) this.dirs.set(dir, (this.dirs.get(dir) ?? 0) + 1);
  }

  private remove(path: string, dropped: Set<string>): void {
    const entry = this.files.get(path);
    if (!entry) return;
    this.files.delete(path);
    this.total -= entry[1];
    const refs = (this.refs.get(entry[0]) ?? 1) - 1;
    if (refs === 0) this.refs.delete(entry[0]);
    else this.refs.set(entry[0], refs);
    dropped.add(entry[0]);
    for (const dir of ancestors(path)) {
      const left = (this.dirs.get(dir) ?? 1) - 1;
      if (left === 0) this.dirs.delete(dir);
      else this.dirs.set(dir, left);
    }
  }

  /** Removes the file at `path`, or (recursive) everything below the directory `path`; returns how many files went. */
  private removeTree(path: string, recursive: boolean, dropped: Set<string>): number {
    if (this.files.has(path)) {
      this.remove(path, dropped);
      return 1;
    }
    if (!recursive || !this.isDir(path)) return 0;
    const prefix = path === "" ? "" : `${path}/`;
    const below = [...this.files.keys()].filter((p) => p.startsWith(prefix));
    for (const p of below) this.remove(p, dropped);
    return below.length;
  }
}

function fileEntry(path: string, [hash, size, mode, mtime]: ManifestEntry): VolumeEntry {
  return { path, type: "file", size, mode, mtime, sha256: hash };
}

/** "a/b/c" → ["a", "a/b"]. */
export function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) out.push(path.slice(0, i));
  return out;
}

/** The canonical path, or VOLUME_PATH_INVALID; only a recursive removal may name the root. */
export function checkedPath(raw: string, allowRoot = false): string {
  try {
    return volumePath(raw, allowRoot);
  } catch (err) {
    if (err instanceof VolumePathError) throw new Beta9Error("VOLUME_PATH_INVALID", { path: err.message });
    throw err;
  }
}
