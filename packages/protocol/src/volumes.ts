/**
 * Volumes: named, per-workspace file trees that containers on any worker mount. The gateway keeps
 * each volume as a manifest (path → content hash, size, mode, mtime) over content-addressed blobs;
 * workers materialise it when a container starts and commit what the container changed when it
 * ends. These are the shapes and the checks every side shares (gateway, worker, SDKs, CLI), so
 * a path is judged the same way wherever it comes from.
 */
import { Type, type Static } from "@sinclair/typebox";

export const VOLUME_NAME_PATTERN = "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$";
const NAME = new RegExp(VOLUME_NAME_PATTERN);

/** Longest path in a volume (UTF-8 bytes), and longest segment (what Linux allows for a name). */
export const MAX_VOLUME_PATH_BYTES = 1024;
export const MAX_VOLUME_SEGMENT_BYTES = 255;
/** Files one volume may hold: the manifest is read whole on a commit, so it must stay bounded. */
export const MAX_VOLUME_FILES = 100_000;

export const VolumeNameSchema = Type.String({ pattern: VOLUME_NAME_PATTERN, description: "lowercase letters, digits, '.', '_' or '-' (1–63)" });

export function isVolumeName(name: string): boolean {
  return NAME.test(name);
}

/** Why `name` is not a volume name, for messages (undefined: it is one). */
export function volumeNameProblem(name: string): string | undefined {
  if (isVolumeName(name)) return undefined;
  const slash = name.includes("/") ? " ('/' is not allowed: a volume is one name, its paths come after ':')" : "";
  return `volume name ${JSON.stringify(name)} is not valid${slash}: use lowercase letters, digits, '.', '_' or '-', 1–63 characters, starting and ending with a letter or digit`;
}

export class VolumePathError extends Error {
  override name = "VolumePathError";
  constructor(readonly path: string, readonly reason: string) {
    super(`${JSON.stringify(path)}: ${reason}`);
  }
}

/**
 * The canonical form of a path inside a volume: relative, '/'-separated, no empty, '.' or '..'
 * segment, no control characters. `a//b/` becomes `a/b`; `""` and `"."` are the root (returned
 * as `""`) only when `allowRoot`. Absolute paths and anything with `..` are refused rather than
 * resolved, so that no spelling of a path can reach outside the volume.
 */
export function volumePath(raw: string, allowRoot = false): string {
  if (typeof raw !== "string") throw new VolumePathError(String(raw), "expected a string");
  if (raw.startsWith("/")) throw new VolumePathError(raw, `is absolute; paths are relative to the volume's root (${raw.replace(/^\/+/, "") || "."})`);
  // Control characters (NUL above all) have no place in a name and break every listing.
  if (/[\u0000-\u001f\u007f]/.test(raw)) throw new VolumePathError(raw, "contains a control character");
  const segments = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) throw new VolumePathError(raw, "contains '..'; a path cannot leave the volume");
  const path = segments.join("/");
  if (path === "") {
    if (allowRoot) return "";
    throw new VolumePathError(raw, "names the volume's root; give a file's path, e.g. data/model.bin");
  }
  if (Buffer.byteLength(path) > MAX_VOLUME_PATH_BYTES) throw new VolumePathError(raw, `is longer than ${MAX_VOLUME_PATH_BYTES} bytes`);
  for (const s of segments) if (Buffer.byteLength(s) > MAX_VOLUME_SEGMENT_BYTES) throw new VolumePathError(raw, `has a name longer than ${MAX_VOLUME_SEGMENT_BYTES} bytes`);
  return path;
}

/** One file of a volume, as stored: [sha256, size, mode (permission bits), mtime (Unix ms)]. */
export type ManifestEntry = [hash: string, size: number, mode: number, mtimeMs: number];

/** A volume's whole content at one version (what workers fetch; `files` absent when unchanged). */
export interface VolumeManifest {
  id: string;
  name: string;
  version: number;
  files: Record<string, ManifestEntry>;
}

/** A change a commit applies: a file's new content (its blob must be stored), or a removal. */
export type VolumeChange =
  | { path: string; hash: string; size: number; mode: number; mtime: number }
  | { path: string; delete: true; recursive?: boolean };

export const VolumeInfoSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  /** Bumped by every commit; 0 until the first. */
  version: Type.Integer(),
  files: Type.Integer(),
  /** Sum of the files' sizes (a content held twice counts twice here, once against the quota). */
  bytes: Type.Integer(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type VolumeInfo = Static<typeof VolumeInfoSchema>;

export const VolumeEntrySchema = Type.Object({
  /** Relative to the volume's root. */
  path: Type.String(),
  type: Type.Union([Type.Literal("file"), Type.Literal("dir")]),
  /** Files: bytes; directories: bytes of every file below. */
  size: Type.Integer(),
  mode: Type.Optional(Type.Integer()),
  /** Files: Unix ms. */
  mtime: Type.Optional(Type.Integer()),
  sha256: Type.Optional(Type.String()),
});
export type VolumeEntry = Static<typeof VolumeEntrySchema>;

export const VolumeChangeSchema = Type.Union([
  Type.Object({
    path: Type.String({ maxLength: 4096 }), hash: Type.String({ pattern: "^[a-f0-9]{64}$" }), size: Type.Integer({ minimum: 0 }),
    mode: Type.Integer({ minimum: 0, maximum: 0o777 }), mtime: Type.Integer({ minimum: 0 }),
  }, { additionalProperties: false }),
  Type.Object({ path: Type.String({ maxLength: 4096 }), delete: Type.Literal(true), recursive: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
]);

/** `VOLUME:PATH` as the CLI writes it; undefined when `spec` names no volume (a local path). */
export function parseVolumeSpec(spec: string): { volume: string; path: string } | undefined {
  const colon = spec.indexOf(":");
  // "./a:b" or "/tmp/a:b" are local paths; a volume name has no '/' and comes first.
  if (colon <= 0 || spec.slice(0, colon).includes("/")) return undefined;
  return { volume: spec.slice(0, colon), path: spec.slice(colon + 1) };
}
