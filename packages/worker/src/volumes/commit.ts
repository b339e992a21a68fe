/**
 * Sends a container's volume changes to the gateway: each changed file streamed from its open
 * descriptor (the gateway hashes it and stores its content once), then the commit naming them, in
 * batches that stay under the gateway's JSON body limit. Per file, last writer wins at the
 * gateway; a file is replaced whole or not at all.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
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

/** Uploads one changed file; undefined when it is no longer the regular file that was listed. */
async function upload(gateway: GatewayEndpoint, workspaceId: string, file: ChangedFile): Promise<VolumeChange | undefined> {
  // O_NOFOLLOW and the inode check: what is read is the file the walk saw, never a link's target.
  const handle = await open(file.source, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const s = await handle.stat();
    if (!s.isFile() || s.ino !== file.ino || s.dev !== file.dev) return undefined;
    const { hash, size } = await uploadContent(gateway, workspaceId, handle, s.size);
    return { path: file.path, hash, size, mode: file.mode, mtime: file.mtime };
  } finally {
    await handle.close();
  }
}

async function uploadAll(gateway: GatewayEndpoint, workspaceId: string, files: ChangedFile[]): Promise<VolumeChange[]> {
  const queue = [...files];
  const out: VolumeChange[] = [];
  const work = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      const change = await upload(gateway, workspaceId, file);
      if (change) out.push(change);
    }
  };
  await Promise.all(Array.from({ length: UPLOADS_AT_ONCE }, work));
  return out;
}

/** Commits `diff`; resolves to the volume after the last batch (undefined: nothing to commit). */
export async function commitDiff(gateway: GatewayEndpoint, target: CommitTarget, diff: VolumeDiff): Promise<VolumeInfo | undefined> {
  // Refused before any upload: the gateway would refuse the commit anyway, after storing every file.
  if (diff.changed.length > MAX_VOLUME_FILES) {
    throw new VolumeHttpError(`${diff.changed.length} files changed in volume ${target.name}: a volume holds at most ${MAX_VOLUME_FILES}; nothing was committed`, 429, "QUOTA_EXCEEDED");
  }
  const byPath = new Map(diff.changed.map((f) => [f.path, f]));
  const changes: VolumeChange[] = [
    ...(await uploadAll(gateway, target.workspaceId, diff.changed)),
    ...diff.removed.map((path): VolumeChange => ({ path, delete: true })),
  ];
  let volume: VolumeInfo | undefined;
  for (const batch of batches(changes)) {
    for (let attempt = 0; ; attempt++) {
      try {
        volume = await commitChanges(gateway, target.workspaceId, target.name, target.volumeId, batch);
        break;
      } catch (err) {
        // An upload collected before its commit (rare: the gateway keeps uploads an hour): send those files again.
        if (!(err instanceof VolumeHttpError) || err.code !== "VOLUME_BLOB_MISSING" || attempt >= 2) throw err;
        const missing = new Set((err.details as { missing?: string[] } | undefined)?.missing ?? []);
        const again = batch.filter((c) => "hash" in c && missing.has(c.hash)).map((c) => byPath.get(c.path)!).filter(Boolean);
        await uploadAll(gateway, target.workspaceId, again);
      }
    }
  }
  return volume;
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
