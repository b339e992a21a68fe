/**
 * Temp files of uploads (objects, image blobs) are written beside their target and renamed into
 * place. At start, what an interrupted upload left is removed: everything when this gateway owns
 * the directory, or only files older than an upload could take when other gateways share it
 * (`--objects` on a shared mount), whose uploads in progress must not be cut off.
 */
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";

/** No upload through one gateway takes longer than this (a request must arrive within 10 min). */
export const SHARED_TEMP_MAX_AGE_MS = 60 * 60 * 1000;

export async function clearTempFiles(dir: string, shared: boolean, now = Date.now()): Promise<void> {
  // Code bundles and images are the gateway's to hand out, not every local user's to read.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (shared) {
      const mtime = await stat(path).then((s) => s.mtimeMs, () => undefined);
      if (mtime === undefined || now - mtime < SHARED_TEMP_MAX_AGE_MS) continue;
    }
    await rm(path, { recursive: true, force: true });
  }
}
