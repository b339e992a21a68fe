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

/**
 * One entry of a volume, as stored: [sha256, size, mode (permission bits), mtime (Unix ms)] for a
 * regular file. A directory kept for itself (an empty one, or one whose mode matters) adds "dir";
 * a symbolic link adds { link: target } (hash "", size 0). A link is only ever its text: no side
 * resolves a path through it (a target may name anything, /etc/shadow included, harmlessly).
 */
export type ManifestEntry = [hash: string, size: number, mode: number, mtimeMs: number, special?: ManifestSpecial];
export type ManifestSpecial = "dir" | { link: string };

export const isDirEntry = (entry: ManifestEntry): boolean => entry[4] === "dir";
export const isFileEntry = (entry: ManifestEntry): boolean => entry[4] === undefined;
export function linkOf(entry: ManifestEntry): string | undefined {
  const special = entry[4];
  return typeof special === "object" && special !== null ? special.link : undefined;
}

/** Longest symlink target (what Linux allows, PATH_MAX less the NUL). */
export const MAX_VOLUME_LINK_BYTES = 4095;

/** Why `target` cannot be a volume symlink's text (undefined: it can). Any path is fine: it is never followed. */
export function linkTargetProblem(target: unknown): string | undefined {
  if (typeof target !== "string" || target === "") return "a symlink's target must be a non-empty string";
  if (target.includes("\0")) return "a symlink's target cannot contain NUL";
  if (Buffer.byteLength(target) > MAX_VOLUME_LINK_BYTES) return `a symlink's target is longer than ${MAX_VOLUME_LINK_BYTES} bytes`;
  return undefined;
}

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
  | { path: string; link: string; mtime: number }
  | { path: string; dir: true; mode: number; mtime: number }
  | { path: string; delete: true; recursive?: boolean };

/** The manifest entry a (non-removal) change puts at its path. */
export function changeEntry(change: Exclude<VolumeChange, { delete: true }>): ManifestEntry {
  if ("link" in change) return ["", 0, 0o777, change.mtime, { link: change.link }];
  if ("dir" in change) return ["", 0, change.mode & 0o777, change.mtime, "dir"];
  return [change.hash, change.size, change.mode & 0o777, change.mtime];
}

/** Whether two entries are the same content (file bytes and mode, link text, directory mode); mtimes aside. */
export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  if (isDirEntry(a) || isDirEntry(b)) return isDirEntry(a) && isDirEntry(b) && a[2] === b[2];
  const la = linkOf(a);
  const lb = linkOf(b);
  if (la !== undefined || lb !== undefined) return la === lb;
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

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
  type: Type.Union([Type.Literal("file"), Type.Literal("dir"), Type.Literal("link")]),
  /** Files: bytes; directories: bytes of every file below; links: 0. */
  size: Type.Integer(),
  /** Links: the link's text (never resolved). */
  target: Type.Optional(Type.String()),
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
  Type.Object({
    path: Type.String({ maxLength: 4096 }), link: Type.String({ minLength: 1, maxLength: MAX_VOLUME_LINK_BYTES }), mtime: Type.Integer({ minimum: 0 }),
  }, { additionalProperties: false }),
  Type.Object({
    path: Type.String({ maxLength: 4096 }), dir: Type.Literal(true), mode: Type.Integer({ minimum: 0, maximum: 0o777 }), mtime: Type.Integer({ minimum: 0 }),
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
