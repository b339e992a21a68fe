/**
 * `volume.commit()` and `volume.reload()` inside a container: they ask the container's worker,
 * through the Unix socket it binds in (BETA9_VOLUME_CONTROL), to publish the container's changes
 * to the volume now, or to bring in what others committed since. The worker checks that the
 * volume is this container's own. Semantics (the README's "Volumes" section):
 *
 * - commit: every file the container changed since its last commit or reload is stored whole and
 *   becomes the volume's content at that path (last writer wins per file; removals too). A file
 *   that keeps changing while it is read is left out (`busy`) rather than stored torn; commit again.
 * - reload: files other writers changed are copied in from the worker's snapshot of the newer
 *   version, each written to a temp name and renamed over the old one (a reader sees the old file
 *   or the new one, never a mix); files they removed are removed. Files this container changed and
 *   has not committed are kept as they are (`kept`): commit them to publish them.
 *
 * Node built-ins only: this file runs in containers as it is.
 */
import { request } from "node:http";
import { chmod, copyFile, lstat, mkdir, rename, rm, rmdir, symlink, unlink, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";

export interface VolumeCommitResult {
  name: string;
  /** The volume's version after this commit (unchanged when there was nothing to commit). */
  version: number;
  changed: number;
  removed: number;
  /** Files left out because they kept changing while read (commit again once they are written). */
  busy: string[];
  /** Entries a volume does not hold (sockets, devices, names it cannot store). */
  skipped: string[];
}

export interface VolumeReloadResult {
  name: string;
  version: number;
  updated: number;
  removed: number;
  /** Paths others changed that this container changed too and has not committed: its own are kept. */
  kept: string[];
}

/** An answer from the worker other than success: `code` is from the error catalogue. */
export class VolumeSyncError extends Error {
  override name = "VolumeSyncError";
  constructor(readonly status: number, readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

interface ReloadAnswer {
  name: string;
  version: number;
  source: string;
  files: { path: string; size: number; mode: number; mtime: number }[];
  /** Symlinks (their text) and directories (empty ones too) other writers made. */
  links?: { path: string; target: string }[];
  dirs?: { path: string; mode: number }[];
  remove: string[];
  kept: string[];
}

function controlSocket(): string {
  const socket = process.env.BETA9_VOLUME_CONTROL;
  if (!socket) throw new VolumeSyncError(0, "VOLUME_NOT_MOUNTED", "commit() and reload() work inside a container that mounts the volume (BETA9_VOLUME_CONTROL is not set); from outside, use client.volumes or beta9 cp");
  return socket;
}

function call<T>(path: string, body: object): Promise<T> {
  const socketPath = controlSocket();
  const text = JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request({ socketPath, path, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        let parsed: { error?: { code?: string; message?: string } } & Record<string, unknown>;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof parsed;
        } catch {
          return reject(new VolumeSyncError(res.statusCode ?? 0, "INTERNAL", `the worker answered ${res.statusCode} with no JSON`));
        }
        if ((res.statusCode ?? 500) >= 300) return reject(new VolumeSyncError(res.statusCode ?? 0, parsed.error?.code ?? "INTERNAL", parsed.error?.message ?? ""));
        resolve(parsed as T);
      });
    });
    req.on("error", (err) => reject(new VolumeSyncError(0, "UNAVAILABLE", `cannot reach this container's worker at ${socketPath}: ${err.message}`)));
    req.end(text);
  });
}

export async function commitVolume(name: string): Promise<VolumeCommitResult> {
  return call<VolumeCommitResult>("/volume/commit", { name });
}

/** Brings others' committed changes into the volume mounted at `mountPath`. */
export async function reloadVolume(name: string, mountPath: string): Promise<VolumeReloadResult> {
  const plan = await call<ReloadAnswer>("/volume/reload", { name });
  for (const dir of plan.dirs ?? []) {
    await makeDirs(join(mountPath, dir.path));
    await chmod(join(mountPath, dir.path), dir.mode);
  }
  for (const file of plan.files) await replaceFile(join(plan.source, file.path), join(mountPath, file.path), file.mode, file.mtime);
  for (const link of plan.links ?? []) await replaceLink(link.target, join(mountPath, link.path));
  for (const path of plan.remove) await removeFile(join(mountPath, path));
  await call("/volume/reloaded", { name, version: plan.version });
  return { name, version: plan.version, updated: plan.files.length, removed: plan.remove.length, kept: plan.kept };
}

/** Writes `dest` whole from `source`: a temp file beside it, renamed over it. */
async function replaceFile(source: string, dest: string, mode: number, mtime: number): Promise<void> {
  await makeDirs(dirname(dest));
  const tmp = `${dest}.beta9-reload-${process.pid}`;
  try {
    await copyFile(source, tmp);
    await chmod(tmp, mode);
    await utimes(tmp, mtime / 1000, mtime / 1000);
    // A directory where the new file goes: the other writer replaced it with a file (as the volume did).
    if ((await lstat(dest).catch(() => undefined))?.isDirectory()) await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** mkdir -p, replacing a file on the way by a directory (another writer made that a directory). */
async function makeDirs(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTDIR" && code !== "EEXIST") throw err;
    const parent = dirname(dir);
    if (parent !== dir) await makeDirs(parent);
    if (!(await lstat(dir).catch(() => undefined))?.isDirectory()) await unlink(dir).catch(() => {});
    await mkdir(dir, { recursive: true });
  }
}

/** A symlink made beside `dest` and renamed over it (a directory there goes: the other writer replaced it). */
async function replaceLink(target: string, dest: string): Promise<void> {
  await makeDirs(dirname(dest));
  const tmp = `${dest}.beta9-reload-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(target, tmp);
  if ((await lstat(dest).catch(() => undefined))?.isDirectory()) await rm(dest, { recursive: true, force: true });
  await rename(tmp, dest);
}

/** A file or link goes; a directory only when empty (what is below it was removed first, or is the container's own). */
async function removeFile(path: string): Promise<void> {
  const s = await lstat(path).catch(() => undefined);
  if (s?.isDirectory()) await rmdir(path).catch(() => {});
  else if (s) await unlink(path).catch(() => {});
}
