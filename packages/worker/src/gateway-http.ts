/** The worker's HTTP calls to the gateway: fetch a packed image, upload a built one (both hash-checked). */
import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import { Agent, request, type Dispatcher } from "undici";
import { API_PREFIX, pinnedTlsOptions } from "@beta9/protocol";
import { FetchError, fetchToFile } from "./fetch-file.js";
import { HashFollower } from "./hash-follower.js";

export interface GatewayEndpoint {
  url: string;
  token: string;
  /** Connections to a gateway with a certificate of its own (`tlsCa`); unset: the global dispatcher. */
  dispatcher?: Dispatcher;
  /** That certificate (PEM), for the downloads that use a socket of their own (fetch-file.ts). */
  tlsCa?: string;
}

/** A dispatcher that trusts the gateway's own certificate (PEM), or undefined for the system's CAs. */
export function gatewayDispatcher(tlsCa: string | undefined): Dispatcher | undefined {
  return tlsCa ? new Agent({ connect: pinnedTlsOptions(tlsCa) }) : undefined;
}

async function failure(what: string, statusCode: number, body: { text(): Promise<string> }): Promise<Error> {
  const text = await body.text().catch(() => "");
  return new Error(`${what}: the gateway answered ${statusCode}${text ? `: ${text.slice(0, 500)}` : ""}`);
}

/** Packed images at least this large are hashed on a thread behind the writer; smaller ones inline. */
const HASH_ON_A_THREAD = 32 * 1024 * 1024;
const PROGRESS_EVERY = 8 * 1024 * 1024;

/** Downloads image `id` to `dest` (fetch-file.ts), refusing bytes whose sha256 differs from the gateway's header. */
export async function fetchImage(gateway: GatewayEndpoint, id: string, dest: string): Promise<void> {
  const handle = await open(dest, "w", 0o644);
  let follower: HashFollower | undefined;
  let digest: Hash | undefined;
  let told = 0;
  try {
    const { headers, bytes } = await fetchToFile(gateway, `${gateway.url}${API_PREFIX}/image/${id}/blob`, handle.fd, {
      onHeaders: (_headers, length) => {
        if (length >= HASH_ON_A_THREAD) follower = new HashFollower(dest);
        else digest = createHash("sha256");
      },
      onPiece: (piece) => digest?.update(piece),
      onWritten: (written) => {
        if (follower && written - told >= PROGRESS_EVERY) follower.progress(told = written);
      },
    }).catch((err: unknown) => {
      throw err instanceof FetchError && err.status !== 0
        ? new Error(`fetching image ${id}: the gateway answered ${err.status}${err.body ? `: ${err.body.slice(0, 500)}` : ""}`)
        : err;
    });
    const expected = headers["x-beta9-sha256"] ?? "";
    const actual = follower ? await follower.finish(bytes) : digest!.digest("hex");
    if (actual !== expected) throw new Error(`image ${id}: received bytes hash to ${actual}, the gateway said ${expected}`);
    await handle.close();
  } catch (err) {
    follower?.abort();
    await handle.close().catch(() => {});
    await rm(dest, { force: true });
    throw err;
  }
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Uploads a built image; the gateway marks it ready only if the bytes hash to `sha256`. */
export async function uploadImage(gateway: GatewayEndpoint, id: string, path: string, sha256: string): Promise<void> {
  const { size } = await stat(path);
  const res = await request(`${gateway.url}${API_PREFIX}/image/${id}/blob`, {
    method: "PUT",
    headers: {
      authorization: `Bearer ${gateway.token}`, "content-type": "application/octet-stream", "content-length": String(size), "x-beta9-sha256": sha256,
    },
    body: createReadStream(path),
    bodyTimeout: 0,
    headersTimeout: 0,
    ...(gateway.dispatcher && { dispatcher: gateway.dispatcher }),
  });
  if (res.statusCode !== 200) throw await failure(`uploading image ${id}`, res.statusCode, res.body);
  await res.body.dump();
}
