/**
 * The moving parts of `client.volumes.upload/download` (and `beta9 cp`): walking a local tree
 * (symlinks kept as links, never followed; empty directories kept), and uploads that resume.
 *
 * A file of CHUNKED_FROM bytes or more goes in chunks: it is hashed first (the whole and each
 * chunk), the gateway says which chunks (or whether the whole content) it stores already, only the
 * others are sent, and the gateway assembles the file from them as one commit. A `cp` broken
 * half-way therefore sends, the next time, only what never arrived; a content the workspace stores
 * already (the same model uploaded under another name) is not sent at all. Smaller files go in
 * one request. A file whose path, size and sha256 the volume has already is skipped.
 */
import { createHash } from "node:crypto";
import { createReadStream, type Stats } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join, relative } from "node:path";
import { Transform } from "node:stream";
import type { VolumeChange } from "@beta9/protocol";
import { ApiError } from "./client.js";
import type { SandboxHttp } from "./sandbox-http.js";

export const CHUNKED_FROM = 8 * 1024 * 1024;
const MIN_CHUNK = 8 * 1024 * 1024;
const MAX_CHUNK = 64 * 1024 * 1024;
const MAX_CHUNKS = 10_000;
const CHUNKS_AT_ONCE = 2;

export type LocalEntry =
  | { kind: "file"; local: string; rel: string; stats: Stats }
  | { kind: "link"; local: string; rel: string; target: string; stats: Stats }
  | { kind: "dir"; local: string; rel: string; stats: Stats };

/** Everything below `dir` (never following a link), directories before what they hold; sockets and devices are left out. */
export async function localTree(dir: string): Promise<LocalEntry[]> {
  const out: LocalEntry[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of (await readdir(at, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const local = join(at, entry.name);
      const rel = relative(dir, local).split("\\").join("/");
      const stats = await lstat(local);
      if (stats.isDirectory()) {
        out.push({ kind: "dir", local, rel, stats });
        await walk(local);
      } else if (stats.isSymbolicLink()) out.push({ kind: "link", local, rel, target: await readlink(local), stats });
      else if (stats.isFile()) out.push({ kind: "file", local, rel, stats });
    }
  };
  await walk(dir);
  return out;
}

/** The chunk size for a file of `size` bytes: 8 MiB, more for files that would need over 10,000 chunks. */
export function chunkSize(size: number): number {
  const mib = 1024 * 1024;
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.ceil(size / MAX_CHUNKS / mib) * mib));
}

/** sha256 of the whole file and of each chunk, read once, streamed. */
export async function hashFile(path: string, chunk: number): Promise<{ sha256: string; chunks: string[]; size: number }> {
  const whole = createHash("sha256");
  const chunks: string[] = [];
  let part = createHash("sha256");
  let inPart = 0;
  let size = 0;
  for await (const data of createReadStream(path, { highWaterMark: 1 << 20 })) {
    let buf = data as Buffer;
    whole.update(buf);
    size += buf.length;
    while (buf.length > 0) {
      const take = Math.min(buf.length, chunk - inPart);
      part.update(buf.subarray(0, take));
      inPart += take;
      buf = buf.subarray(take);
      if (inPart === chunk) {
        chunks.push(part.digest("hex"));
        part = createHash("sha256");
        inPart = 0;
      }
    }
  }
  if (inPart > 0 || chunks.length === 0) chunks.push(part.digest("hex"));
  return { sha256: whole.digest("hex"), chunks, size };
}

export interface FileUpload {
  http: SandboxHttp;
  volumeUrl: string;
  local: string;
  path: string;
  stats: Stats;
  /** Bytes moved (sent, or found stored): for progress. */
  onBytes: (n: number) => void;
}

export interface UploadedFile {
  path: string;
  sha256: string;
  size: number;
  /** The volume's version after this file's commit. */
  version: number;
  /** Bytes of this file actually sent (less than `size` when chunks or the whole content were stored already). */
  sent?: number;
}

const modeOf = (stats: Stats) => stats.mode & 0o777;

/** One file in one request (small files). */
export async function uploadWhole(u: FileUpload): Promise<UploadedFile> {
  const query = { path: u.path, mode: modeOf(u.stats).toString(8).padStart(3, "0"), mtime: String(Math.floor(u.stats.mtimeMs)) };
  const out = await u.http.json<UploadedFile>("PUT", `${u.volumeUrl}/file`, {
    body: createReadStream(u.local, { highWaterMark: 1 << 20 }).pipe(meter(u.onBytes)), contentLength: u.stats.size, query,
  });
  return { ...out, sent: u.stats.size };
}

/** One large file in chunks, sending only those the gateway does not store (see the file's comment). */
export async function uploadChunked(u: FileUpload): Promise<UploadedFile> {
  const size = chunkSize(u.stats.size);
  const { sha256, chunks, size: total } = await hashFile(u.local, size);
  const mode = modeOf(u.stats);
  const mtime = Math.floor(u.stats.mtimeMs);
  const check = await u.http.json<{ stored: boolean; missing: string[] }>("POST", `${u.volumeUrl}/upload/check`, { json: { sha256, chunks, size: total } });
  if (check.stored) {
    const change: VolumeChange = { path: u.path, hash: sha256, size: total, mode, mtime };
    const volume = await u.http.json<{ version: number }>("POST", `${u.volumeUrl}/changes`, { json: { changes: [change] } });
    u.onBytes(total);
    return { path: u.path, sha256, size: total, version: volume.version, sent: 0 };
  }
  let sent = 0;
  const send = async (missing: readonly string[]): Promise<void> => {
    const wanted = new Set(missing);
    const queue = chunks.map((hash, i) => ({ hash, i })).filter((c) => {
      const first = wanted.delete(c.hash); // a content repeated in the file (zeros) goes once
      if (!first) u.onBytes(Math.min(size, total - c.i * size));
      return first;
    });
    const work = async (): Promise<void> => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const start = c.i * size;
        const length = Math.min(size, total - start);
        const body = createReadStream(u.local, { start, end: start + length - 1, highWaterMark: 1 << 20 }).pipe(meter(u.onBytes));
        await u.http.json("PUT", `${u.volumeUrl}/chunk/${c.hash}`, { body, contentLength: length });
        sent += length;
      }
    };
    await Promise.all(Array.from({ length: CHUNKS_AT_ONCE }, work));
  };
  await send(check.missing);
  for (let attempt = 0; ; attempt++) {
    try {
      const out = await u.http.json<UploadedFile>("POST", `${u.volumeUrl}/assemble`, { json: { path: u.path, size: total, sha256, chunks, mode, mtime } });
      return { ...out, sent };
    } catch (err) {
      // Another upload of the same content assembled first and dropped a shared chunk: send it again.
      if (!(err instanceof ApiError) || err.code !== "VOLUME_BLOB_MISSING" || attempt >= 2) throw err;
      await send((err.details as { missing?: string[] } | undefined)?.missing ?? []);
    }
  }
}

/** The sha256 of a local file (to skip one the volume has already). */
export async function sha256Of(path: string): Promise<string> {
  const digest = createHash("sha256");
  for await (const data of createReadStream(path, { highWaterMark: 1 << 20 })) digest.update(data as Buffer);
  return digest.digest("hex");
}

function meter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}
