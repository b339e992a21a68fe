/**
 * An OCI distribution client: resolve a reference to a platform manifest, pull its config and
 * layer blobs to disk (every byte verified against its digest), and push images (tests build one
 * into a local registry; users export images with it).
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { formatImageRef, parseImageRef, type ImageRef } from "@beta9/protocol";
import { DigestMismatchError, sha256Digest, writeVerified } from "./digest.js";
import { MANIFEST_ACCEPT, ManifestError, hostPlatform, parseManifestDocument, selectPlatform, type Descriptor, type ImageConfig, type ImageManifest, type Platform } from "./oci.js";
import { RegistryError, RegistryTransport, responseHeader, type RegistryAuth, type ResponseData } from "./registry-http.js";
import { mapLimit, pushImage, type PushImage, type PushResult } from "./registry-push.js";

export { RegistryError, type RegistryAuth, type RegistryCredentialValues } from "./registry-http.js";
export type { PushImage, PushResult } from "./registry-push.js";

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface ResolvedImage {
  ref: ImageRef;
  /** The fully qualified reference, e.g. "127.0.0.1:5000/app:v1". */
  name: string;
  /** Digest of the platform manifest (what `name@digest` pulls). */
  digest: string;
  /** Digest of the index the manifest was picked from, when the ref named a multi-platform image. */
  indexDigest?: string;
  manifest: ImageManifest;
  manifestBytes: Buffer;
}

export interface PulledLayer extends Descriptor {
  /** The verified blob on disk. */
  path: string;
  /** sha256 of the uncompressed tar, from the image config (checked when the layer is applied). */
  diffId?: string;
}

export interface PulledImage extends ResolvedImage {
  config: ImageConfig;
  configPath: string;
  layers: PulledLayer[];
}

export interface PullProgress {
  digest: string;
  bytes: number;
  total: number;
}

export interface RegistryClientOptions {
  /** Which image to pick from a multi-platform index; default: this machine's. */
  platform?: Platform;
  /** Blobs downloaded or uploaded at once (default 3). */
  concurrency?: number;
  /**
   * Let pulls reach loopback, link-local and private addresses (a registry on the LAN, a test
   * registry). Default: BETA9_ALLOW_PRIVATE_REGISTRIES=1 in the environment, else refused.
   */
  allowPrivate?: boolean;
  /** Credentials for one registry host (a private base image); other hosts never see them. */
  auth?: RegistryAuth;
}

export function toRef(ref: string | ImageRef): ImageRef {
  return typeof ref === "string" ? parseImageRef(ref) : ref;
}

/** Reads a response body into memory, refusing more than `limit` bytes. */
async function readLimited(res: ResponseData, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      res.body.destroy();
      throw new ManifestError(what, `the manifest is larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export class RegistryClient {
  readonly transport: RegistryTransport;
  private readonly platform: Platform;
  private readonly concurrency: number;

  constructor(options: RegistryClientOptions = {}) {
    this.transport = new RegistryTransport(options.allowPrivate, options.auth);
    this.platform = options.platform ?? hostPlatform();
    this.concurrency = options.concurrency ?? 3;
  }

  /** GETs a manifest by tag or digest; verifies it against the digest it was asked by (if any). */
  async fetchManifest(ref: ImageRef, reference: string): Promise<FetchedManifest> {
    const what = `image ${ref.registry}/${ref.repository}${reference.startsWith("sha256:") ? "@" : ":"}${reference}`;
    const res = await this.transport.send(ref.registry, {
      method: "GET",
      url: `/v2/${ref.repository}/manifests/${reference}`,
      scope: `repository:${ref.repository}:pull`,
      headers: { accept: MANIFEST_ACCEPT },
      expect: [200],
      what,
    });
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256Digest(bytes);
    if (reference.startsWith("sha256:") && digest !== reference) throw new DigestMismatchError(`manifest of ${what}`, reference, digest);
    const claimed = responseHeader(res, "docker-content-digest");
    // For a tag we cannot know the right digest, but a registry that names one must be consistent.
    if (claimed?.startsWith("sha256:") && claimed !== digest) throw new DigestMismatchError(`manifest of ${what}`, claimed, digest);
    return { bytes, mediaType: responseHeader(res, "content-type") ?? "", digest };
  }

  /** Resolves a reference to the manifest for this client's platform. */
  async resolve(input: string | ImageRef): Promise<ResolvedImage> {
    const ref = toRef(input);
    const name = formatImageRef(ref);
    const top = await this.fetchManifest(ref, ref.digest ?? ref.tag ?? "latest");
    const doc = parseManifestDocument(top.bytes, top.mediaType, `image ${name}`);
    if (doc.kind === "manifest") return { ref, name, digest: top.digest, manifest: doc.manifest, manifestBytes: top.bytes };
    const chosen = selectPlatform(doc.index, this.platform, `image ${name}`);
    const child = await this.fetchManifest(ref, chosen.digest);
    const childDoc = parseManifestDocument(child.bytes, child.mediaType, `image ${name}@${chosen.digest}`);
    if (childDoc.kind !== "manifest") throw new ManifestError(`image ${name}`, "an index entry points at another index");
    return { ref, name, digest: child.digest, indexDigest: top.digest, manifest: childDoc.manifest, manifestBytes: child.bytes };
  }

  /** Streams one blob to `dest`, verified; nothing is left at `dest` (or beside it) on failure. */
  async fetchBlob(input: string | ImageRef, desc: Pick<Descriptor, "digest" | "size">, dest: string, onBytes?: (n: number) => void): Promise<void> {
    const ref = toRef(input);
    const what = `blob ${desc.digest} of ${ref.registry}/${ref.repository}`;
    const res = await this.transport.send(ref.registry, {
      method: "GET",
      url: `/v2/${ref.repository}/blobs/${desc.digest}`,
      scope: `repository:${ref.repository}:pull`,
      expect: [200],
      what,
    });
    await writeVerified(res.body, dest, { what, expectedDigest: desc.digest, expectedSize: desc.size, ...(onBytes && { onBytes }) });
  }

  /**
   * Pulls config and layers into `blobDir/sha256/<hex>` (content-addressed, so blobs already there
   * from another image are reused without a download).
   */
  async pull(input: string | ImageRef, blobDir: string, onProgress?: (p: PullProgress) => void): Promise<PulledImage> {
    const resolved = await this.resolve(input);
    const dir = join(blobDir, "sha256");
    await mkdir(dir, { recursive: true });
    const pathOf = (digest: string): string => join(dir, digest.slice("sha256:".length));
    const fetchOnce = async (desc: Descriptor): Promise<string> => {
      const path = pathOf(desc.digest);
      const existing = await stat(path).catch(() => undefined);
      if (existing?.size !== desc.size) {
        await this.fetchBlob(resolved.ref, desc, path, (bytes) => onProgress?.({ digest: desc.digest, bytes, total: desc.size }));
      }
      return path;
    };
    const configPath = await fetchOnce(resolved.manifest.config);
    const config = parseConfig(await readFile(configPath), resolved.name);
    const diffIds = config.rootfs?.diff_ids;
    if (diffIds && diffIds.length !== resolved.manifest.layers.length) {
      throw new ManifestError(`image ${resolved.name}`, `the config lists ${diffIds.length} diff_ids for ${resolved.manifest.layers.length} layers`);
    }
    const layers = await mapLimit(resolved.manifest.layers, this.concurrency, async (desc, i) => ({
      ...desc,
      path: await fetchOnce(desc),
      ...(diffIds?.[i] !== undefined && { diffId: diffIds[i] }),
    }));
    return { ...resolved, config, configPath, layers };
  }

  /** Uploads blobs and the manifest; see {@link pushImage}. */
  push(input: string | ImageRef, image: PushImage): Promise<PushResult> {
    return pushImage(this.transport, toRef(input), image, this.concurrency);
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}

function parseConfig(bytes: Buffer, name: string): ImageConfig {
  try {
    const config = JSON.parse(bytes.toString("utf8")) as ImageConfig;
    if (!config || typeof config !== "object") throw new Error("not an object");
    return config;
  } catch (err) {
    throw new ManifestError(`image ${name}`, `the image config is not valid JSON (${(err as Error).message})`);
  }
}
