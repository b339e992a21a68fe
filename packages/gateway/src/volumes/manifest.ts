/**
 * A volume's manifest in memory: path → [sha256, size, mode, mtime], plus the derived directory
 * tree and hash reference counts, so that applying a commit costs O(changes × depth) rather than
 * a scan of every file per change. A directory exists through the entries below it, or as an
 * entry of its own (an empty directory, kept with its mode); a symlink is an entry holding its text.
 *
 * Commit semantics (what `apply` does), per path, last writer wins:
 * - a new content replaces the file at that path whole (the bytes are a stored blob: never torn);
 * - a file where a directory is needed (`a` when `a/b` arrives) is replaced by the directory, and
 *   a directory where a file arrives is replaced by the file, with everything below it;
 * - a link is replaced like a file, and a path below a link replaces the link with a directory
 *   (links are text here: nothing is ever resolved through one);
 * - a directory entry keeps what is below it; removing it without `recursive` removes it only when
 *   nothing is below it (rmdir);
 * - a removal of a path that is no longer there is not an error (another writer got there first).
 */
import {
  Beta9Error, isDirEntry, isFileEntry, linkOf, linkTargetProblem, MAX_VOLUME_FILES, volumePath, VolumePathError,
  type ManifestEntry, type VolumeChange, type VolumeEntry,
} from "@beta9/protocol";

export class Manifest {
  /** Every entry: regular files, symlinks (their text only) and directories kept for themselves. */
  private readonly files = new Map<string, ManifestEntry>();
  /** Directory path → number of entries below it (any depth). The root ("") is implicit. */
  private readonly dirs = new Map<string, number>();
  private readonly refs = new Map<string, number>();
  private total = 0;

  static from(record: Record<string, ManifestEntry>): Manifest {
    const manifest = new Manifest();
    for (const [path, entry] of Object.entries(record)) manifest.add(path, entry);
    return manifest;
  }

  /** Entries (files, links and kept directories): what the volume's `files` count shows. */
  get size(): number {
    return this.files.size;
  }

  get bytes(): number {
    return this.total;
  }

  /** The entry at `path`, whatever its kind. */
  get(path: string): ManifestEntry | undefined {
    return this.files.get(path);
  }

  /** The regular file at `path` (not a link, not a directory). */
  file(path: string): ManifestEntry | undefined {
    const entry = this.files.get(path);
    return entry && isFileEntry(entry) ? entry : undefined;
  }

  isDir(path: string): boolean {
    if (path === "" || this.dirs.has(path)) return true;
    const entry = this.files.get(path);
    return entry !== undefined && isDirEntry(entry);
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
   * path or link text (before changing anything) and QUOTA_EXCEEDED past MAX_VOLUME_FILES (the caller drops
   * this manifest then: nothing is written).
   */
  apply(changes: readonly VolumeChange[], volumeName: string, maxFiles = MAX_VOLUME_FILES): { dropped: string[]; changed: number } {
    const checked = changes.map((change) => {
      if ("link" in change) {
        const problem = linkTargetProblem(change.link);
        if (problem) throw new Beta9Error("VOLUME_PATH_INVALID", { path: `${JSON.stringify(change.path)}: ${problem}` });
      }
      return { ...change, path: checkedPath(change.path, "delete" in change) };
    });
    const dropped = new Set<string>();
    let changed = 0;
    for (const change of checked) {
      if ("delete" in change) {
        changed += this.removeTree(change.path, change.recursive === true, dropped);
        continue;
      }
      const { path } = change;
      // A file or link on the way down becomes a directory: the newer writer wins. Links are
      // never looked through: `a/b` under a link `a` replaces the link with a directory.
      for (const dir of ancestors(path)) {
        const at = this.files.get(dir);
        if (at && !isDirEntry(at)) this.remove(dir, dropped);
      }
      const old = this.files.get(path);
      if ("dir" in change) {
        // A directory keeps what is below it; a file or link there is replaced by it.
        if (old) this.remove(path, dropped);
        this.add(path, ["", 0, change.mode & 0o777, change.mtime, "dir"]);
      } else {
        if (this.isDir(path)) this.removeTree(path, true, dropped);
        if (this.files.has(path)) this.remove(path, dropped);
        this.add(path, "link" in change ? ["", 0, 0o777, change.mtime, { link: change.link }] : [change.hash, change.size, change.mode & 0o777, change.mtime]);
      }
      changed += 1;
    }
    if (this.files.size > maxFiles) {
      throw new Beta9Error("QUOTA_EXCEEDED", {
        count: this.files.size, kind: `entries (files, links, directories) in volume ${volumeName} after this commit`, limit: maxFiles, hint: "keep fewer, larger files (an archive) or spread them over volumes",
      });
    }
    return { dropped: [...dropped].filter((hash) => !this.refs.has(hash)), changed };
  }

  /**
   * What `ls` shows at `dir`: its direct children (directories with the bytes below them), or with
   * `recursive` every entry below it (files, links, and empty directories); a file or link path
   * lists that entry. Undefined: nothing is there.
   */
  list(dir: string, recursive = false): VolumeEntry[] | undefined {
    const at = this.files.get(dir);
    if (at && !isDirEntry(at)) return [entryOf(dir, at)];
    if (!this.isDir(dir)) return undefined;
    const prefix = dir === "" ? "" : `${dir}/`;
    const out = new Map<string, VolumeEntry>();
    for (const [path, entry] of this.files) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      // Recursive: files, links, and directories with nothing below (what a copy must make itself).
      if (recursive && isDirEntry(entry) && this.dirs.has(path)) continue;
      if (recursive || slash === -1) {
        const seen = out.get(path);
        out.set(path, { ...entryOf(path, entry), ...(seen && { size: seen.size }) });
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
    if (isFileEntry(entry)) {
      this.total += entry[1];
      this.refs.set(entry[0], (this.refs.get(entry[0]) ?? 0) + 1);
    }
    for (const dir of ancestors(path)) this.dirs.set(dir, (this.dirs.get(dir) ?? 0) + 1);
  }

  private remove(path: string, dropped: Set<string>): void {
    const entry = this.files.get(path);
    if (!entry) return;
    this.files.delete(path);
    if (isFileEntry(entry)) {
      this.total -= entry[1];
      const refs = (this.refs.get(entry[0]) ?? 1) - 1;
      if (refs === 0) this.refs.delete(entry[0]);
      else this.refs.set(entry[0], refs);
      dropped.add(entry[0]);
    }
    for (const dir of ancestors(path)) {
      const left = (this.dirs.get(dir) ?? 1) - 1;
      if (left === 0) this.dirs.delete(dir);
      else this.dirs.set(dir, left);
    }
  }

  /**
   * Removes the file or link at `path`; a directory: (recursive) with everything below it, or
   * (not recursive) only when nothing is below it, as rmdir does. Returns how many entries went.
   */
  private removeTree(path: string, recursive: boolean, dropped: Set<string>): number {
    const entry = this.files.get(path);
    if (entry && !isDirEntry(entry)) {
      this.remove(path, dropped);
      return 1;
    }
    if (!recursive) {
      if (!entry || this.dirs.has(path)) return 0;
      this.remove(path, dropped);
      return 1;
    }
    if (!this.isDir(path)) return 0;
    const prefix = path === "" ? "" : `${path}/`;
    const below = [...this.files.keys()].filter((p) => p.startsWith(prefix));
    for (const p of below) this.remove(p, dropped);
    if (entry) this.remove(path, dropped);
    return below.length + (entry ? 1 : 0);
  }
}

function entryOf(path: string, entry: ManifestEntry): VolumeEntry {
  const [hash, size, mode, mtime] = entry;
  if (isDirEntry(entry)) return { path, type: "dir", size: 0, mode, mtime };
  const link = linkOf(entry);
  if (link !== undefined) return { path, type: "link", size: 0, mtime, target: link };
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
