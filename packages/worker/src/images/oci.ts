/**
 * OCI / Docker v2 image formats: media types, the shapes we read, and checks that turn a
 * malformed document into a clear error instead of a crash further down.
 */
import { DIGEST_PATTERN } from "./digest.js";

export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerTar: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerForeignLayerGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

/** Sent on every manifest GET, so registries answer with whichever of these they hold. */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerList, MediaType.dockerManifest].join(", ");

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerList]);
const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const LAYER_TYPES = new Set<string>([
  MediaType.ociLayerTar, MediaType.ociLayerGzip, MediaType.ociLayerZstd, MediaType.dockerLayerGzip,
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", MediaType.dockerForeignLayerGzip,
]);

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

/** The parts of the image config the runtime uses. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: { Env?: string[]; Cmd?: string[]; Entrypoint?: string[]; WorkingDir?: string; User?: string };
  rootfs?: { type: string; diff_ids: string[] };
}

export class ManifestError extends Error {
  constructor(what: string, reason: string) {
    super(`${what}: ${reason}`);
    this.name = "ManifestError";
  }
}

function checkDescriptor(d: unknown, where: string, what: string): Descriptor {
  const desc = d as Partial<Descriptor> | null;
  if (!desc || typeof desc !== "object") throw new ManifestError(what, `${where} is not a descriptor`);
  if (typeof desc.mediaType !== "string") throw new ManifestError(what, `${where}.mediaType is missing`);
  if (typeof desc.digest !== "string" || !DIGEST_PATTERN.test(desc.digest)) {
    throw new ManifestError(what, `${where}.digest "${String(desc.digest)}" is not a sha256 digest (other algorithms are not supported)`);
  }
  if (!Number.isSafeInteger(desc.size) || (desc.size as number) < 0) throw new ManifestError(what, `${where}.size is invalid`);
  return desc as Descriptor;
}

/**
 * Parses a manifest or index. The media type comes from the document itself when it names one,
 * else from the Content-Type header (older Docker manifests omit it from the body).
 */
export function parseManifestDocument(bytes: Buffer, contentType: string, what: string): { kind: "index"; index: ImageIndex } | { kind: "manifest"; manifest: ImageManifest } {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new ManifestError(what, "the manifest is not valid JSON");
  }
  const mediaType = typeof doc.mediaType === "string" ? doc.mediaType : contentType.split(";")[0]!.trim();
  if (doc.schemaVersion !== 2) throw new ManifestError(what, `schemaVersion ${String(doc.schemaVersion)} manifests are not supported (only v2 / OCI)`);
  const isIndex = INDEX_TYPES.has(mediaType) || (!MANIFEST_TYPES.has(mediaType) && Array.isArray(doc.manifests));
  if (isIndex) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError(what, "the index has no manifests list");
    doc.manifests.forEach((m, i) => checkDescriptor(m, `manifests[${i}]`, what));
    return { kind: "index", index: doc as unknown as ImageIndex };
  }
  if (!MANIFEST_TYPES.has(mediaType) && !doc.config) throw new ManifestError(what, `unsupported manifest media type "${mediaType}"`);
  checkDescriptor(doc.config, "config", what);
  if (!Array.isArray(doc.layers)) throw new ManifestError(what, "the manifest has no layers list");
  doc.layers.forEach((l, i) => {
    const layer = checkDescriptor(l, `layers[${i}]`, what);
    if (!LAYER_TYPES.has(layer.mediaType)) throw new ManifestError(what, `layers[${i}] has unsupported media type "${layer.mediaType}"`);
  });
  return { kind: "manifest", manifest: doc as unknown as ImageManifest };
}

/** The platform of this machine in OCI terms (Node says x64 where OCI says amd64). */
export function hostPlatform(): Platform {
  const arch = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" }[process.arch as string];
  return { os: "linux", architecture: arch ?? process.arch };
}

/** Picks the manifest for `platform` from an index; arm variants must match when asked for. */
export function selectPlatform(index: ImageIndex, platform: Platform, what: string): Descriptor {
  const candidates = index.manifests.filter(
    (m) => m.platform?.os === platform.os && m.platform.architecture === platform.architecture && (!platform.variant || m.platform.variant === platform.variant),
  );
  const chosen = candidates[0];
  if (!chosen) {
    const offered = index.manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ""}` : "unknown")).join(", ");
    throw new ManifestError(what, `no image for ${platform.os}/${platform.architecture} (the index offers: ${offered || "nothing"})`);
  }
  return chosen;
}
