/**
 * What a container changed in a volume, read from its overlay: every regular file in the upper
 * directory is new or changed, every symlink there is a link (kept as its text), and a directory
 * that is empty in the merged view is kept as an entry of its own (so that empty directories
 * survive), unless the base has it so already. An entry of the snapshot is gone when the merged view no longer has that
 * kind of entry there (a whiteout, a directory removed and made again, a file replaced by a symlink
 * or a directory). Only snapshot paths at or below something in the upper directory can have
 * changed, so the merged view is asked about those alone.
 *
 * The upper directory is the container's to shape: entries are lstat'ed, never followed, and files
 * are opened with O_NOFOLLOW and checked to be the inode that was listed (commit.ts). Directories
 * are listed, and entries (upper and merged) looked up, through a descriptor of the directory,
 * checked to be where the walk expects it, so that no path the worker resolves goes through a
 * tenant's link (not even one swapped in between a check and its use).
 */
import { constants, type Dirent, type Stats } from "node:fs";
import { lstat, open, readdir, readlink, realpath } from "node:fs/promises";
import { join } from "node:path";
import { isDirEntry, linkOf, linkTargetProblem, volumePath, type ManifestEntry } from "@beta9/protocol";

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
  /** Symlinks new or changed (their text, never followed). */
  links: { path: string; target: string; mtime: number }[];
  /** Directories empty in the container's view that the base does not hold as such (they survive as entries). */
  dirs: { path: string; mode: number; mtime: number }[];
  /** Base entries gone, deepest first (a directory after what was below it). */
  removed: string[];
  /** Entries a volume cannot hold (sockets, devices, bad names), for the container's log. */
  skipped: string[];
}

/**
 * `recheck`: base paths to look up in the merged view even when nothing in the upper directory is
 * at or above them (files a mid-run commit or a reload added to the base: they are not in the lower
 * snapshot, so removing one leaves no whiteout behind).
 */
export async function diffOverlay(upper: string, merged: string, base: Record<string, ManifestEntry>, recheck: ReadonlySet<string> = new Set()): Promise<VolumeDiff> {
  const diff: VolumeDiff = { changed: [], links: [], dirs: [], removed: [], skipped: [] };
  const touched = new Set<string>();
  /** Directories of the upper layer, and how many entries a volume keeps each holds there. */
  const upperDirs: { path: string; mode: number; mtime: number }[] = [];
  const kept = new Map<string, number>();
  const upperReal = await realpath(upper).catch(() => upper);
  const mergedReal = await realpath(merged).catch(() => merged);
  const walk = async (rel: string): Promise<void> => {
    // Listed through a descriptor checked to be the directory the walk expects: `rel` swapped for a
    // link since its parent's lstat must not make a host directory's names the container's.
    const entries: Dirent[] | undefined = await inDir(upperReal, rel, (at) => readdir(at, { withFileTypes: true }));
    if (!entries) return;
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      touched.add(path);
      if (entry.isCharacterDevice()) continue; // an overlay whiteout: the merged view tells
      let canonical: string | undefined;
      try {
        canonical = volumePath(path);
      } catch {
        canonical = undefined;
      }
      if (canonical !== path || !(entry.isFile() || entry.isDirectory() || entry.isSymbolicLink())) {
        diff.skipped.push(path);
        continue;
      }
      if (entry.isDirectory()) {
        const s = await inParent(upperReal, rel, entry.name, (at) => lstat(at));
        if (!s?.isDirectory()) continue;
        kept.set(rel, (kept.get(rel) ?? 0) + 1);
        upperDirs.push({ path, mode: s.mode & 0o777, mtime: Math.floor(s.mtimeMs) });
        await walk(path);
        continue;
      }
      if (entry.isSymbolicLink()) {
        const found = await inParent(upperReal, rel, entry.name, async (at) => ({ s: await lstat(at), target: await readlink(at) }));
        if (!found?.s.isSymbolicLink()) continue;
        if (linkTargetProblem(found.target)) {
          diff.skipped.push(path);
          continue;
        }
        kept.set(rel, (kept.get(rel) ?? 0) + 1);
        const had = base[path];
        if (!had || linkOf(had) !== found.target) diff.links.push({ path, target: found.target, mtime: Math.floor(found.s.mtimeMs) });
        continue;
      }
      const s = await inParent(upperReal, rel, entry.name, (at) => lstat(at));
      if (!s?.isFile()) continue;
      kept.set(rel, (kept.get(rel) ?? 0) + 1);
      diff.changed.push({ path, source: join(upper, path), size: s.size, mode: s.mode & 0o777, mtime: Math.floor(s.mtimeMs), ino: s.ino, dev: s.dev });
    }
  };
  await walk("");
  if (touched.size === 0 && recheck.size === 0) return diff;
  // A path that is there in another kind (a file made a directory…) is replaced, not removed.
  const changed = new Set([...diff.changed, ...diff.links, ...upperDirs].map((c) => c.path));
  for (const [path, entry] of Object.entries(base)) {
    if (changed.has(path)) continue;
    if (!recheck.has(path) && !touched.has(path) && !ancestorsOf(path).some((dir) => touched.has(dir))) continue;
    // lstat follows links in the middle of a path: a directory the container replaced with a
    // symlink to a host path would make the host answer. Every ancestor must be a real directory,
    // and the entry is looked up through a descriptor of its parent checked to be where the walk
    // expects it (not by a path resolved again).
    const slash = path.lastIndexOf("/");
    const s = (await realDirs(merged, ancestorsOf(path)))
      ? await inParent(mergedReal, slash === -1 ? "" : path.slice(0, slash), path.slice(slash + 1), (at) => lstat(at))
      : undefined;
    if (!s || !sameKind(s, entry)) diff.removed.push(path);
  }
  diff.removed.sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  // A directory is kept for itself when it is empty in the merged view (nothing of its own in the
  // upper layer, nothing of the base left below it): a directory with entries exists through them.
  const gone = new Set(diff.removed);
  const basePaths = Object.keys(base);
  for (const d of upperDirs) {
    if ((kept.get(d.path) ?? 0) > 0) continue;
    if (basePaths.some((p) => p.startsWith(`${d.path}/`) && !gone.has(p))) continue;
    const had = base[d.path];
    if (!had || !isDirEntry(had) || had[2] !== d.mode) diff.dirs.push(d);
  }
  return diff;
}

/** Whether what is at a path now is the kind of entry the base has there (a changed link shows in the upper layer). */
function sameKind(s: Stats, entry: ManifestEntry): boolean {
  if (isDirEntry(entry)) return s.isDirectory();
  if (linkOf(entry) !== undefined) return s.isSymbolicLink();
  return s.isFile();
}

/**
 * Runs `fn` on `<root>/<rel>/<name>` reached through an open descriptor of the parent directory,
 * after checking that the descriptor is that directory: a container that swaps `rel` for a link to
 * a host directory meanwhile makes this answer undefined, never the host's entry.
 */
async function inParent<T>(root: string, rel: string, name: string, fn: (at: string) => Promise<T>): Promise<T | undefined> {
  return inDir(root, rel, (at) => fn(`${at}/${name}`));
}

/** Runs `fn` on `<root>/<rel>` as `/proc/self/fd/N`, a descriptor checked to be that directory (see `inParent`). */
async function inDir<T>(root: string, rel: string, fn: (at: string) => Promise<T>): Promise<T | undefined> {
  const dir = await open(join(root, rel), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!dir) return undefined;
  try {
    const actual = await readlink(`/proc/self/fd/${dir.fd}`).catch(() => "");
    if (actual !== (rel === "" ? root : join(root, rel))) return undefined;
    return await fn(`/proc/self/fd/${dir.fd}`).catch(() => undefined);
  } finally {
    await dir.close();
  }
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
