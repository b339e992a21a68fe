/** The worker's HTTP calls to the gateway: fetch a packed image, upload a built one (both hash-checked). */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { Agent, request, type Dispatcher } from "undici";
import { API_PREFIX, pinnedTlsOptions } from "@beta9/protocol";
import { downloadVerified } from "./fetch-file.js";

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

/** The one way to build a worker's endpoint: pooled calls and own-socket downloads trust the same certificate. */
export function gatewayEndpoint(url: string, token: string, tlsCa: string | undefined): GatewayEndpoint {
  return { url, token, ...(tlsCa && { dispatcher: gatewayDispatcher(tlsCa)!, tlsCa }) };
}

async function failure(what: string, statusCode: number, body: { text(): Promise<string> }): Promise<Error> {
  const text = await body.text().catch(() => "");
  return new Error(`${what}: the gateway answered ${statusCode}${text ? `: ${text.slice(0, 500)}` : ""}`);
}

/** Downloads image `id` to `dest` (fetch-file.ts), refusing bytes whose sha256 differs from the gateway's header. */
export async function fetchImage(gateway: GatewayEndpoint, id: string, dest: string): Promise<void> {
  await downloadVerified(gateway, `${gateway.url}${API_PREFIX}/image/${encodeURIComponent(id)}/blob`, dest, {
    what: `image ${id}`, expected: (headers) => headers["x-beta9-sha256"] ?? "", flags: "w", mode: 0o644,
    fetchError: (err) => err.status === 0 ? err : new Error(`fetching image ${id}: the gateway answered ${err.status}${err.body ? `: ${err.body.slice(0, 500)}` : ""}`),
  });
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
