/**
 * Pushing to an OCI registry: blobs by monolithic upload (POST for a session, PUT with the digest),
 * skipped when the registry already has them, then the manifest.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { formatImageRef, type ImageRef } from "@beta9/protocol";
import { DigestMismatchError, sha256Digest, sha256File } from "./digest.js";
import { MediaType, type Descriptor, type ImageManifest } from "./oci.js";
import { RegistryError, responseHeader, type RegistryTransport } from "./registry-http.js";

export interface PushLayer {
  /** A file holding the (compressed) layer blob. */
  path: string;
  mediaType: string;
}

export interface PushImage {
  /** The image config JSON, exactly the bytes to upload. */
  config: Buffer;
  layers: PushLayer[];
  annotations?: Record<string, string>;
}

export interface PushResult {
  /** Digest of the manifest (pull `name@digest`). */
  digest: string;
  manifest: ImageManifest;
  manifestBytes: Buffer;
}

/** Runs `fn` over `items`, at most `limit` at a time, in order of start. */
/**
 * Runs `fn` over `items` at most `limit` at a time. After a failure no new item starts, and the
 * call rejects only once the running ones have settled, so no transfer (and no temp file it
 * would clean up) outlives the call.
 */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
  return results;
}

type BlobSource = { path: string } | { data: Buffer };

function blobWhat(ref: ImageRef, digest: string): string {
  return `blob ${digest} to ${ref.registry}/${ref.repository}`;
}

/** Uploads one blob unless the registry has it already; returns its digest and size. */
export async function pushBlob(transport: RegistryTransport, ref: ImageRef, source: BlobSource): Promise<{ digest: string; size: number }> {
  const digest = "data" in source ? sha256Digest(source.data) : await sha256File(source.path);
  const size = "data" in source ? source.data.length : (await stat(source.path)).size;
  const scope = `repository:${ref.repository}:pull,push`;
  const what = blobWhat(ref, digest);
  const head = await transport.send(ref.registry, { method: "HEAD", url: `/v2/${ref.repository}/blobs/${digest}`, scope, expect: [200, 404], what });
  await head.body.dump();
  if (head.statusCode === 200) return { digest, size };
  const started = await transport.send(ref.registry, { method: "POST", url: `/v2/${ref.repository}/blobs/uploads/`, scope, expect: [202], what });
  await started.body.dump();
  const location = responseHeader(started, "location");
  if (!location) throw new RegistryError("HTTP", `${what}: the registry gave no upload location`);
  const url = new URL(location, "http://placeholder.invalid");
  url.searchParams.set("digest", digest);
  // Keep a relative location relative, so the transport resolves it against the registry origin.
  const target = /^https?:\/\//.test(location) ? url.toString() : `${url.pathname}${url.search}`;
  const done = await transport.send(ref.registry, {
    method: "PUT",
    url: target,
    scope,
    headers: { "content-type": "application/octet-stream", "content-length": String(size) },
    body: () => ("data" in source ? source.data : createReadStream(source.path)),
    expect: [201],
    what,
  });
  await done.body.dump();
  return { digest, size };
}

/** PUTs a manifest under `reference` (a tag or its own digest); returns its digest. */
export async function putManifest(transport: RegistryTransport, ref: ImageRef, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
  const digest = sha256Digest(bytes);
  if (reference.startsWith("sha256:") && reference !== digest) throw new DigestMismatchError(`manifest for ${formatImageRef(ref)}`, reference, digest);
  const res = await transport.send(ref.registry, {
    method: "PUT",
    url: `/v2/${ref.repository}/manifests/${reference}`,
    scope: `repository:${ref.repository}:pull,push`,
    headers: { "content-type": mediaType },
    body: () => bytes,
    expect: [201],
    what: `manifest for ${formatImageRef(ref)}`,
  });
  await res.body.dump();
  const stored = responseHeader(res, "docker-content-digest");
  if (stored && stored !== digest) throw new DigestMismatchError(`manifest stored for ${formatImageRef(ref)}`, digest, stored);
  return digest;
}

/** Pushes config and layers, then an OCI manifest naming them, under the ref's tag (or digest). */
export async function pushImage(transport: RegistryTransport, ref: ImageRef, image: PushImage, concurrency: number): Promise<PushResult> {
  const config = await pushBlob(transport, ref, { data: image.config });
  const layers = await mapLimit(image.layers, concurrency, async (layer): Promise<Descriptor> => {
    const { digest, size } = await pushBlob(transport, ref, { path: layer.path });
    return { mediaType: layer.mediaType, digest, size };
  });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers,
    ...(image.annotations && { annotations: image.annotations }),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const digest = await putManifest(transport, ref, ref.digest ?? ref.tag ?? "latest", manifestBytes, MediaType.ociManifest);
  return { digest, manifest, manifestBytes };
}
