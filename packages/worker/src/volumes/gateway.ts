/**
 * The worker's volume calls to the gateway: a volume's manifest when a container mounts it, a
 * content by hash (written to a file, checked against its hash), a changed file's upload (streamed
 * from an open descriptor), and the commit naming the uploads.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm, type FileHandle } from "node:fs/promises";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { request } from "undici";
import { API_PREFIX, type ManifestEntry, type VolumeChange, type VolumeInfo } from "@beta9/protocol";
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

/** Writes content `hash` to `dest` (a new file), refusing bytes that hash otherwise. */
export async function downloadBlob(gw: GatewayEndpoint, workspaceId: string, hash: string, dest: string): Promise<void> {
  const res = await call(gw, `volume content ${hash}`, `${base(gw, workspaceId)}/blob/${hash}`);
  const digest = createHash("sha256");
  const hasher = new Transform({ transform(chunk: Buffer, _e, cb) { digest.update(chunk); cb(null, chunk); } });
  try {
    await pipeline(res.body, hasher, createWriteStream(dest, { flags: "wx", mode: 0o600, highWaterMark: 1 << 20 }));
    const actual = digest.digest("hex");
    if (actual !== hash) throw new Error(`volume content ${hash}: received bytes hash to ${actual}`);
    // Not fsynced: the cache drops every snapshot after a host restart (cache.ts init).
  } catch (err) {
    await rm(dest, { force: true });
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
