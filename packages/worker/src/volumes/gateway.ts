/**
 * The worker's volume calls to the gateway: a volume's manifest when a container mounts it, a
 * content by hash (written to a file, checked against its hash), a changed file's upload (streamed
 * from an open descriptor), and the commit naming the uploads.
 */
import { createHash } from "node:crypto";
import { writeSync } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { request } from "undici";
import { API_PREFIX, type ManifestEntry, type VolumeChange, type VolumeInfo } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";
import { HashFollower } from "./hash-follower.js";

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
  const text = await res.body.text().catch(() => "");
  let code = `HTTP_${res.statusCode}`;
  let message = text.slice(0, 500);
  let details: unknown;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; details?: unknown } };
    code = parsed.error?.code ?? code;
    message = parsed.error?.message ?? message;
    details = parsed.error?.details;
  } catch {
    // not JSON: keep the text
  }
  throw new VolumeHttpError(`${what}: ${res.statusCode} ${code}: ${message}`, res.statusCode, code, details);
}

/** The volume a container mounts (the gateway creates it when missing). */
export async function mountVolume(gw: GatewayEndpoint, workspaceId: string, name: string, have?: { id: string; version: number }): Promise<MountAnswer> {
  const query = have ? `?have=${encodeURIComponent(`${have.id}:${have.version}`)}` : "";
  const res = await call(gw, `volume ${name}`, `${base(gw, workspaceId)}/${encodeURIComponent(name)}/mount${query}`, { method: "POST" });
  return (await res.body.json()) as MountAnswer;
}

/** Contents at least this large are hashed on a thread of their own (hash-follower.ts); smaller ones inline. */
const HASH_ON_A_THREAD = 32 * 1024 * 1024;
/** How often the hashing thread is told how far the file is written. */
const PROGRESS_EVERY = 8 * 1024 * 1024;
const BATCH = 512 * 1024;

/**
 * Writes content `hash`, `size` bytes (the manifest's), to `dest` (a new file), refusing bytes that
 * hash otherwise and a body of any other length (a longer one is cut off as soon as it passes
 * `size`). Written with synchronous positional writes on the event loop: a syscall into the page
 * cache, where a write stream would take a thread-pool round trip per piece (about 0.7× the speed).
 */
export async function downloadBlob(gw: GatewayEndpoint, workspaceId: string, hash: string, size: number, dest: string): Promise<void> {
  const res = await call(gw, `volume content ${hash}`, `${base(gw, workspaceId)}/blob/${hash}`);
  // From here every way out destroys the body: an abandoned one could later emit an unheard 'error'.
  const ended = new Promise<void>((resolve, reject) => {
    res.body.once("end", resolve);
    res.body.once("error", reject);
  });
  ended.catch(() => {});
  let handle: FileHandle | undefined;
  let follower: HashFollower | undefined;
  try {
    const declared = res.headers["content-length"];
    if (declared !== undefined && Number(declared) !== size) throw new Error(`volume content ${hash}: the gateway sends ${declared} bytes, the manifest says ${size}`);
    handle = await open(dest, "wx", 0o600);
    const fd = handle.fd;
    follower = size >= HASH_ON_A_THREAD ? new HashFollower(dest) : undefined;
    const digest = follower ? undefined : createHash("sha256");
    // Pieces arrive in 64 KiB reads; they are gathered into 512 KiB writes: fewer syscalls, and the
    // page cache keeps larger folios, which a container's later reads of the file go through (reads
    // of a file written 64 KiB at a time measured 1.4× slower here). 2 MiB writes were slower to make
    // (higher-order page allocations): 3.4–4.9 s a GiB against 1.7–2.2 s at 512 KiB and 1.9–2.1 s at 64 KiB.
    const batch = Buffer.allocUnsafe(size >= BATCH ? BATCH : 64 * 1024);
    let held = 0;
    let at = 0;
    let told = 0;
    const flush = () => {
      for (let off = 0; off < held;) off += writeSync(fd, batch, off, held - off, at - held + off);
      held = 0;
    };
    // 'data' events, not `for await`: a promise per 64 KiB piece cost a third more CPU here.
    res.body.on("data", (piece: Buffer) => {
      try {
        if (at + piece.length > size) throw new Error(`volume content ${hash}: the gateway sent more than the manifest's ${size} bytes`);
        for (let from = 0; from < piece.length;) {
          const n = piece.copy(batch, held, from);
          held += n;
          at += n;
          from += n;
          if (held === batch.length) flush();
        }
        digest?.update(piece);
        if (follower && at - held - told >= PROGRESS_EVERY) follower.progress(told = at - held);
      } catch (err) {
        res.body.destroy(err as Error);
      }
    });
    await ended;
    flush();
    if (at !== size) throw new Error(`volume content ${hash}: received ${at} of ${size} bytes`);
    const actual = follower ? await follower.finish(at) : digest!.digest("hex");
    if (actual !== hash) throw new Error(`volume content ${hash}: received bytes hash to ${actual}`);
    // Not fsynced: the cache drops every snapshot after a host restart (cache.ts init).
    await handle.close();
  } catch (err) {
    follower?.abort();
    res.body.destroy();
    await handle?.close().catch(() => {});
    if (handle) await rm(dest, { force: true });
    throw err;
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
