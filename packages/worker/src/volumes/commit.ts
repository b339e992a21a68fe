/**
 * Sends a container's volume changes to the gateway: each changed file streamed from its open
 * descriptor (the gateway hashes it and stores its content once), then the commit naming them
 * with the directories and symlinks (their text) the container made, in
 * batches that stay under the gateway's JSON body limit. Per file, last writer wins at the
 * gateway; a file is replaced whole or not at all.
 */
import { constants, type Stats } from "node:fs";
import { open, readlink, realpath, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { VolumeChange, VolumeInfo } from "@beta9/protocol";
import { MAX_VOLUME_FILES } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";
import type { ChangedFile, VolumeDiff } from "./changes.js";
import { commitChanges, uploadContent, VolumeHttpError } from "./gateway.js";

const UPLOADS_AT_ONCE = 4;
/** JSON bytes per commit call: well below the gateway's 1 MiB body limit. */
const BATCH_BYTES = 512 * 1024;

export interface CommitTarget {
  workspaceId: string;
  name: string;
  volumeId: string;
}

/** What a file looked like when its content was read: a later stat that differs means it changed since. */
export interface ReadStamp {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  hash: string;
}

/** Attempts at reading a file that a running container keeps writing, before it is left for the next commit. */
const BUSY_TRIES = 3;

/**
 * Opens a listed file for reading; undefined when it is no longer the regular file the walk saw.
 * O_NOFOLLOW and the inode check cover the last component; /proc/self/fd covers the rest: a
 * container that swaps a directory of its upper layer for a symlink to a host directory between
 * the walk and this open would make the worker read a host file, and the descriptor's real path
 * then lies outside the upper directory.
 */
export async function openListed(file: ChangedFile): Promise<FileHandle | undefined> {
  const handle = await open(file.source, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const s = await handle.stat();
    const root = await realpath(file.source.slice(0, file.source.length - file.path.length - 1));
    const actual = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => "");
    if (s.isFile() && s.ino === file.ino && s.dev === file.dev && actual === join(root, file.path)) return handle;
  } catch {
    // fall through: not the file that was listed
  }
  await handle.close();
  return undefined;
}

const same = (a: Stats, b: Stats) => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;

type Uploaded = { change: VolumeChange; stamp: ReadStamp } | { busy: string } | undefined;

/**
 * Uploads one changed file. A file that changes while it is read (a running container still
 * writing it, for a commit made mid-run) is read again; still changing after a few tries, it is
 * `busy` and left for the next commit, so that no torn mix of two writes is ever committed.
 */
async function upload(gateway: GatewayEndpoint, workspaceId: string, file: ChangedFile): Promise<Uploaded> {
  const handle = await openListed(file);
  if (!handle) return undefined;
  try {
    for (let attempt = 0; attempt < BUSY_TRIES; attempt++) {
      const before = await handle.stat();
      // The upload's stream may close the descriptor it reads (undici destroys bodies): read through
      // a second one to the same open file (no path is resolved again), and keep `handle` to stat it after.
      const reader = await open(`/proc/self/fd/${handle.fd}`, "r");
      const { hash, size } = await uploadContent(gateway, workspaceId, reader, before.size).finally(() => reader.close().catch(() => {}));
      const after = await handle.stat();
      if (!same(before, after) || size !== before.size) continue;
      return {
        change: { path: file.path, hash, size, mode: after.mode & 0o777, mtime: Math.floor(after.mtimeMs) },
        stamp: { ino: after.ino, size, mtimeMs: after.mtimeMs, ctimeMs: after.ctimeMs, hash },
      };
    }
    return { busy: file.path };
  } finally {
    await handle.close();
  }
}

export interface CommitOutcome {
  /** The volume after the last batch; undefined when there was nothing to commit. */
  volume?: VolumeInfo;
  /** What was committed (the caller's base follows it). */
  changes: VolumeChange[];
  /** Read stamps of the uploaded files, by path: an unchanged stamp later means an unchanged file. */
  stamps: Map<string, ReadStamp>;
  /** Files left out because they kept changing while read. */
  busy: string[];
}

async function uploadAll(gateway: GatewayEndpoint, workspaceId: string, files: ChangedFile[], outcome: CommitOutcome): Promise<VolumeChange[]> {
  const queue = [...files];
  const out: VolumeChange[] = [];
  const work = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      const done = await upload(gateway, workspaceId, file);
      if (!done) continue;
      if ("busy" in done) {
        outcome.busy.push(done.busy);
        continue;
      }
      out.push(done.change);
      outcome.stamps.set(done.change.path, done.stamp);
    }
  };
  await Promise.all(Array.from({ length: UPLOADS_AT_ONCE }, work));
  return out;
}

/** Commits `diff` in batches; what went in, and what was left out because it kept changing. */
export async function commitDiff(gateway: GatewayEndpoint, target: CommitTarget, diff: VolumeDiff): Promise<CommitOutcome> {
  // Refused before any upload: the gateway would refuse the commit anyway, after storing every file.
  if (diff.changed.length > MAX_VOLUME_FILES) {
    throw new VolumeHttpError(`${diff.changed.length} files changed in volume ${target.name}: a volume holds at most ${MAX_VOLUME_FILES}; nothing was committed`, 429, "QUOTA_EXCEEDED");
  }
  const byPath = new Map(diff.changed.map((f) => [f.path, f]));
  const outcome: CommitOutcome = { changes: [], stamps: new Map(), busy: [] };
  const changes: VolumeChange[] = [
    ...diff.dirs.map((d): VolumeChange => ({ path: d.path, dir: true, mode: d.mode, mtime: d.mtime })),
    ...(await uploadAll(gateway, target.workspaceId, diff.changed, outcome)),
    ...diff.links.map((l): VolumeChange => ({ path: l.path, link: l.target, mtime: l.mtime })),
    ...diff.removed.map((path): VolumeChange => ({ path, delete: true })),
  ];
  for (const batch of batches(changes)) {
    for (let attempt = 0; ; attempt++) {
      try {
        outcome.volume = await commitChanges(gateway, target.workspaceId, target.name, target.volumeId, batch);
        outcome.changes.push(...batch);
        break;
      } catch (err) {
        // An upload collected before its commit (rare: the gateway keeps uploads an hour): send those files again.
        if (!(err instanceof VolumeHttpError) || err.code !== "VOLUME_BLOB_MISSING" || attempt >= 2) throw err;
        const missing = new Set((err.details as { missing?: string[] } | undefined)?.missing ?? []);
        const again = batch.filter((c) => "hash" in c && missing.has(c.hash)).map((c) => byPath.get(c.path)!).filter(Boolean);
        await uploadAll(gateway, target.workspaceId, again, outcome);
      }
    }
  }
  return outcome;
}

function* batches(changes: VolumeChange[]): Generator<VolumeChange[]> {
  let batch: VolumeChange[] = [];
  let bytes = 0;
  for (const change of changes) {
    const size = JSON.stringify(change).length + 1;
    if (batch.length > 0 && (bytes + size > BATCH_BYTES || batch.length >= 10_000)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(change);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}
