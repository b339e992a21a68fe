/**
 * What a container changed in a volume, read from its overlay: every regular file in the upper
 * directory is new or changed; a file of the snapshot is gone when the merged view no longer has a
 * regular file there (a whiteout, a directory removed and made again, a file replaced by a symlink
 * or a directory). Only snapshot paths at or below something in the upper directory can have
 * changed, so the merged view is asked about those alone.
 *
 * The upper directory is the container's to shape: entries are lstat'ed, never followed, and files
 * are opened with O_NOFOLLOW and checked to be the inode that was listed (commit.ts).
 */
import type { Dirent } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { volumePath, type ManifestEntry } from "@beta9/protocol";

export interface ChangedFile {
  /** Relative to the volume's root. */
  path: string;
  /** Where its bytes are on the host (in the upper directory). */
  source: string;
  size: number;
  mode: number;
  mtime: number;
  ino: number;
  dev: number;
}

export interface VolumeDiff {
  changed: ChangedFile[];
  removed: string[];
  /** Entries a volume cannot hold (symlinks, sockets, bad names), for the container's log. */
  skipped: string[];
}

export async function diffOverlay(upper: string, merged: string, base: Record<string, ManifestEntry>): Promise<VolumeDiff> {
  const diff: VolumeDiff = { changed: [], removed: [], skipped: [] };
  const touched = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(join(upper, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      touched.add(path);
      if (entry.isDirectory()) {
        await walk(path);
        continue;
      }
      if (entry.isCharacterDevice()) continue; // an overlay whiteout: the merged view tells
      let canonical: string | undefined;
      try {
        canonical = volumePath(path);
      } catch {
        canonical = undefined;
      }
      if (!entry.isFile() || canonical !== path) {
        diff.skipped.push(path);
        continue;
      }
      const s = await lstat(join(upper, path)).catch(() => undefined);
      if (!s?.isFile()) continue;
      diff.changed.push({ path, source: join(upper, path), size: s.size, mode: s.mode & 0o777, mtime: Math.floor(s.mtimeMs), ino: s.ino, dev: s.dev });
    }
  };
  await walk("");
  if (touched.size === 0) return diff;
  const changed = new Set(diff.changed.map((c) => c.path));
  for (const path of Object.keys(base)) {
    if (changed.has(path)) continue;
    if (!touched.has(path) && !ancestorsOf(path).some((dir) => touched.has(dir))) continue;
    // lstat follows links in the middle of a path: a directory the container replaced with a
    // symlink to a host path would make the host answer. Every ancestor must be a real directory.
    const s = (await realDirs(merged, ancestorsOf(path))) ? await lstat(join(merged, path)).catch(() => undefined) : undefined;
    if (!s?.isFile()) diff.removed.push(path);
  }
  return diff;
}

/** True when each of `dirs` (relative to `root`, outermost first) is a directory, not a link to one. */
async function realDirs(root: string, dirs: string[]): Promise<boolean> {
  for (const dir of dirs) {
    const s = await lstat(join(root, dir)).catch(() => undefined);
    if (!s?.isDirectory()) return false;
  }
  return true;
}

/** "a/b/c" → ["a", "a/b"]. */
function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) out.push(path.slice(0, i));
  return out;
}
