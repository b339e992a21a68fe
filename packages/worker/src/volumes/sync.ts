/**
 * A mounted volume's sync state, for commits made while its container runs (`volume.commit()` in
 * the SDKs, through control.ts) as well as the one at exit, and for `volume.reload()`.
 *
 * `base` is the volume as this container last agreed with it: the snapshot it mounted, plus what it
 * has committed since, or the version it reloaded to. A commit sends only what differs from the
 * base (a file committed earlier and untouched since is not sent again, so a later commit never
 * undoes another writer's newer version of it), then moves the base forward. A reload lists what
 * other writers changed since the base and the container did not (its own uncommitted changes are
 * kept); the SDK copies those files in from the new snapshot, inside the container, and confirms,
 * and the base becomes that version. The worker itself never writes into a running container's
 * view: a path there is the tenant's to redirect with symlinks.
 *
 * The base is kept on disk beside the container's upper directory, so that a worker restarted
 * after a crash commits what is left without sending earlier commits again.
 */
import { createHash } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { changeEntry, isDirEntry, isFileEntry, linkOf, sameEntry, type ManifestEntry, type VolumeChange } from "@beta9/protocol";
import { diffOverlay, type ChangedFile, type VolumeDiff } from "./changes.js";
import { openListed, type ReadStamp } from "./commit.js";

export interface SyncState {
  /** The volume version the base is (or follows: a commit's answer). */
  version: number;
  /** The volume as this container last agreed with it (see the file's comment). */
  base: Record<string, ManifestEntry>;
  /** What the overlay's lower layer (the mounted snapshot) holds: a path elsewhere leaves no whiteout when removed. */
  lower: Record<string, ManifestEntry>;
  /** Contents hashed (or uploaded) already, by path, valid while the file's stamp is the same. */
  stamps: Map<string, ReadStamp>;
  /** A reload answered and not yet confirmed: the base it moves to. */
  pending?: { version: number; base: Record<string, ManifestEntry> };
}

export function newSyncState(files: Record<string, ManifestEntry>, version = 0): SyncState {
  return { version, base: { ...files }, lower: files, stamps: new Map() };
}

const BASE_FILE = "base.json";

export async function saveBase(dir: string, state: SyncState): Promise<void> {
  const tmp = join(dir, `${BASE_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(state.base));
  await rename(tmp, join(dir, BASE_FILE));
}

/** The base a container's earlier commits left (undefined: it made none, its snapshot is the base). */
export async function loadBase(dir: string): Promise<Record<string, ManifestEntry> | undefined> {
  return readFile(join(dir, BASE_FILE), "utf8").then((t) => JSON.parse(t) as Record<string, ManifestEntry>, () => undefined);
}

/** The sha256 of a listed file, from its stamp when unchanged since it was last read. */
async function contentHash(file: ChangedFile, stamps: Map<string, ReadStamp>): Promise<string | undefined> {
  const known = stamps.get(file.path);
  const handle = await openListed(file);
  if (!handle) return undefined;
  try {
    const s = await handle.stat();
    if (known && known.ino === s.ino && known.size === s.size && known.mtimeMs === s.mtimeMs && known.ctimeMs === s.ctimeMs) return known.hash;
    const digest = createHash("sha256");
    for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 1 << 20 })) digest.update(chunk as Buffer);
    const hash = digest.digest("hex");
    stamps.set(file.path, { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, hash });
    return hash;
  } finally {
    await handle.close();
  }
}

/** What the container changed since its base: files whose content or mode differ, and base files it removed. */
export async function localChanges(upper: string, merged: string, state: SyncState): Promise<VolumeDiff> {
  const recheck = new Set(Object.keys(state.base).filter((path) => !(path in state.lower)));
  const diff = await diffOverlay(upper, merged, state.base, recheck);
  const changed: ChangedFile[] = [];
  for (const file of diff.changed) {
    const known = state.base[file.path];
    if (known && known[1] === file.size && known[2] === file.mode && (await contentHash(file, state.stamps)) === known[0]) continue;
    changed.push(file);
  }
  return { ...diff, changed };
}

/** Moves the base past a commit's changes. */
export function applyCommitted(state: SyncState, changes: readonly VolumeChange[], stamps: Map<string, ReadStamp>): void {
  for (const change of changes) {
    if ("delete" in change) {
      delete state.base[change.path];
      state.stamps.delete(change.path);
      continue;
    }
    // A file where a directory was (or the reverse): what the gateway dropped is gone from the base too.
    // A directory entry keeps what is below it; a file or link on the way down to anything goes.
    for (const [path, entry] of Object.entries(state.base)) {
      const below = path.startsWith(`${change.path}/`) && !("dir" in change);
      const above = change.path.startsWith(`${path}/`) && !isDirEntry(entry);
      if (below || above) delete state.base[path];
    }
    state.base[change.path] = changeEntry(change);
    const stamp = stamps.get(change.path);
    if (stamp) state.stamps.set(change.path, stamp);
  }
}

export interface ReloadPlan {
  version: number;
  /** Files to copy in from the new snapshot (other writers' changes). */
  files: { path: string; size: number; mode: number; mtime: number }[];
  /** Symlinks to make (their text), and directories to make or give a mode. */
  links: { path: string; target: string }[];
  dirs: { path: string; mode: number }[];
  /** Files other writers removed. */
  remove: string[];
  /** Paths other writers changed that this container changed too and has not committed: its own stay. */
  kept: string[];
}

/** What a reload to `files` (a newer version) brings in, given the container's own changes `local`. */
export function planReload(state: SyncState, version: number, files: Record<string, ManifestEntry>, local: VolumeDiff): ReloadPlan {
  const mine = new Set([...local.changed, ...(local.links ?? []), ...(local.dirs ?? [])].map((c) => c.path).concat(local.removed));
  const plan: ReloadPlan = { version, files: [], links: [], dirs: [], remove: [], kept: [] };
  for (const [path, entry] of Object.entries(files)) {
    const had = state.base[path];
    if (had && sameEntry(had, entry)) continue;
    const link = linkOf(entry);
    if (mine.has(path)) plan.kept.push(path);
    else if (link !== undefined) plan.links.push({ path, target: link });
    else if (!isFileEntry(entry)) plan.dirs.push({ path, mode: entry[2] });
    else plan.files.push({ path, size: entry[1], mode: entry[2], mtime: entry[3] });
  }
  plan.dirs.sort((a, b) => (a.path < b.path ? -1 : 1)); // parents first
  for (const path of Object.keys(state.base)) {
    if (path in files) continue;
    if (mine.has(path)) plan.kept.push(path);
    else plan.remove.push(path);
  }
  plan.remove.sort((a, b) => (a < b ? 1 : -1)); // what is below a directory first
  state.pending = { version, base: { ...files } };
  return plan;
}
