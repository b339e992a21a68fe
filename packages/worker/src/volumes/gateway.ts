/**
 * The worker's volume calls to the gateway: a volume's manifest when a container mounts it, a
 * content by hash (written to a file, checked against its hash), a changed file's upload (streamed
 * from an open descriptor), and the commit naming the uploads.
 */
import { createHash } from "node:crypto";
import { writeSync } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { downloadVerified } from "../fetch-file.js";
import { request } from "undici";
import { API_PREFIX, parseErrorBody, type ManifestEntry, type VolumeChange, type VolumeInfo } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";

export interface MountAnswer {
  id: string;
  name: string;
  version: number;
  /** Absent when the worker already has this version (it said so with `have`). */
  files?: Record<string, ManifestEntry>;
}

/** A non-2xx answer: `status` and the catalogue `code` decide whether trying again can help. */
export class VolumeHttpError extends Error {
  override name = "VolumeHttpError";
  constructor(message: string, readonly status: number, readonly code: string, readonly details?: unknown) {
    super(message);
  }

  /** Worth another try later: the gateway could not be reached, or failed on its side. */
  get transient(): boolean {
    return this.status === 0 || this.status >= 500 || this.status === 408;
  }
}

const base = (gw: GatewayEndpoint, workspaceId: string) => `${gw.url}${API_PREFIX}/worker/volume/${encodeURIComponent(workspaceId)}`;

async function call(gw: GatewayEndpoint, what: string, url: string, options: Omit<Parameters<typeof request>[1] & object, "dispatcher"> = {}) {
  let res;
  try {
    res = await request(url, {
      ...options, headers: { authorization: `Bearer ${gw.token}`, ...(options.headers as Record<string, string> | undefined) },
      // Past the gateway's own 10-minute request limit an answer will not come: give up then (a commit is retried later).
      headersTimeout: 15 * 60_000, bodyTimeout: 5 * 60_000, ...(gw.dispatcher && { dispatcher: gw.dispatcher }),
    });
  } catch (err) {
    throw new VolumeHttpError(`${what}: cannot reach the gateway (${(err as Error).message})`, 0, "UNREACHABLE");
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return res;
  throw httpError(what, res.statusCode, await res.body.text().catch(() => ""));
}

/** A non-2xx answer as a {@link VolumeHttpError}, with the catalogue's code when the body has one. */
function httpError(what: string, status: number, text: string): VolumeHttpError {
  const { code, message, details } = parseErrorBody(status, text);
  return new VolumeHttpError(`${what}: ${status} ${code}: ${message}`, status, code, details);
}

/** The volume a container mounts (the gateway creates it when missing). */
export async function mountVolume(gw: GatewayEndpoint, workspaceId: string, name: string, have?: { id: string; version: number }): Promise<MountAnswer> {
  const query = have ? `?have=${encodeURIComponent(`${have.id}:${have.version}`)}` : "";
  const res = await call(gw, `volume ${name}`, `${base(gw, workspaceId)}/${encodeURIComponent(name)}/mount${query}`, { method: "POST" });
  return (await res.body.json()) as MountAnswer;
}

/**
 * Contents at least this large come on a socket of their own straight into the file (fetch-file.ts);
 * smaller ones through the shared connection pool. Both hash as the bytes come.
 */
const LARGE = 32 * 1024 * 1024;

/**
 * Writes content `hash`, `size` bytes (the manifest's), to `dest` (a new file), refusing bytes that
 * hash otherwise and a body of any other length (a longer one is cut off as soon as it passes
 * `size`). Not fsynced: the cache drops every snapshot after a host restart (cache.ts init).
 */
export async function downloadBlob(gw: GatewayEndpoint, workspaceId: string, hash: string, size: number, dest: string): Promise<void> {
  const url = `${base(gw, workspaceId)}/blob/${hash}`;
  const what = `volume content ${hash}`;
  if (size >= LARGE) {
    return downloadVerified(gw, url, dest, { what, expected: () => hash, size, flags: "wx", mode: 0o600, fetchError: (err) => err.status === 0
      ? new VolumeHttpError(`${what}: cannot reach the gateway (${err.message})`, 0, "UNREACHABLE")
      : httpError(what, err.status, err.body) });
  }
  const handle = await open(dest, "wx", 0o600);
  try {
    const actual = await downloadSmall(gw, url, what, size, handle.fd);
    if (actual !== hash) throw new Error(`${what}: received bytes hash to ${actual}`);
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(dest, { force: true });
    throw err;
  }
}

/** A small content through the pool: positional writes as pieces come, hashed inline; answers the hash. */
async function downloadSmall(gw: GatewayEndpoint, url: string, what: string, size: number, fd: number): Promise<string> {
  const res = await call(gw, what, url);
  // From here every way out destroys the body: an abandoned one could later emit an unheard 'error'.
  const ended = new Promise<void>((resolve, reject) => {
    res.body.once("end", resolve);
    res.body.once("error", reject);
  });
  ended.catch(() => {});
  try {
    const declared = res.headers["content-length"];
    if (declared !== undefined && Number(declared) !== size) throw new Error(`${what}: the gateway sends ${declared} bytes, the manifest says ${size}`);
    const digest = createHash("sha256");
    let at = 0;
    let ours: unknown;
    // 'data' events, not `for await`: a promise per 64 KiB piece cost a third more CPU here.
    res.body.on("data", (piece: Buffer) => {
      try {
        if (at + piece.length > size) throw new Error(`${what}: the gateway sent more than the manifest's ${size} bytes`);
        for (let off = 0; off < piece.length;) off += writeSync(fd, piece, off, piece.length - off, at + off);
        at += piece.length;
        digest.update(piece);
      } catch (err) {
        res.body.destroy((ours = err) as Error);
      }
    });
    await ended.catch((err: unknown) => {
      // Ours (too many bytes, a full disk) as it is; the connection's own failure is the gateway unreachable (transient).
      throw err === ours ? err : new VolumeHttpError(`${what}: cannot reach the gateway (${(err as Error).message})`, 0, "UNREACHABLE");
    });
    if (at !== size) throw new Error(`${what}: received ${at} of ${size} bytes`);
    return digest.digest("hex");
  } finally {
    res.body.destroy();
  }
}

/** Streams `size` bytes of an open file to the gateway; answers the content's hash as the gateway computed it. */
export async function uploadContent(gw: GatewayEndpoint, workspaceId: string, file: FileHandle, size: number): Promise<{ hash: string; size: number }> {
  const res = await call(gw, "uploading a volume file", `${base(gw, workspaceId)}/blob`, {
    method: "POST", headers: { "content-type": "application/octet-stream", "content-length": String(size) },
    body: size === 0 ? Buffer.alloc(0) : file.createReadStream({ start: 0, end: size - 1, autoClose: false, highWaterMark: 1 << 20 }),
  });
  return (await res.body.json()) as { hash: string; size: number };
}

export async function commitChanges(gw: GatewayEndpoint, workspaceId: string, name: string, volumeId: string, changes: VolumeChange[]): Promise<VolumeInfo> {
  const res = await call(gw, `committing volume ${name}`, `${base(gw, workspaceId)}/${encodeURIComponent(name)}/commit`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ volumeId, changes }),
  });
  return (await res.body.json()) as VolumeInfo;
}
