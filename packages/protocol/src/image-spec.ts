/**
 * The canonical description of a container image (what `new Image()` in the SDK builds) and its
 * id. The id is a hash of the normalized spec, so the SDK, gateway and worker agree on it without
 * talking, and an unchanged image is never rebuilt (reference: beta9 §2.2).
 */
import { createHash } from "node:crypto";
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { canonicalJson } from "./stub-config.js";

/**
 * Salted into every id. Bump it whenever the same spec would build a different image (a new
 * default base, a different pip invocation, ...), so that old cached images are not reused.
 */
export const IMAGE_FORMAT_VERSION = "beta9-image/1";

const Packages = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 1000 });

const StepSchemas = {
  shell: Type.Object({ kind: Type.Literal("shell"), command: Type.String({ minLength: 1, maxLength: 65_536 }) }, { additionalProperties: false }),
  apt: Type.Object({ kind: Type.Literal("apt"), packages: Packages }, { additionalProperties: false }),
  pip: Type.Object({ kind: Type.Literal("pip"), packages: Packages }, { additionalProperties: false }),
  npm: Type.Object({ kind: Type.Literal("npm"), packages: Packages }, { additionalProperties: false }),
};
export const ImageStepSchema = Type.Union([StepSchemas.shell, StepSchemas.apt, StepSchemas.pip, StepSchemas.npm]);
export type ImageStep = Static<typeof ImageStepSchema>;

const BaseSchemas = {
  default: Type.Object({ kind: Type.Literal("default") }, { additionalProperties: false }),
  /** An empty root: enough for JavaScript workloads, which run on the runner's own node. */
  scratch: Type.Object({ kind: Type.Literal("scratch") }, { additionalProperties: false }),
  registry: Type.Object({ kind: Type.Literal("registry"), ref: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false }),
};
export const ImageBaseSchema = Type.Union([BaseSchemas.default, BaseSchemas.scratch, BaseSchemas.registry]);
export type ImageBase = Static<typeof ImageBaseSchema>;

export const ImageSpecSchema = Type.Object(
  {
    base: ImageBaseSchema,
    steps: Type.Array(ImageStepSchema, { maxItems: 256 }),
    env: Type.Record(Type.String(), Type.String({ maxLength: 32_768 })),
  },
  { additionalProperties: false },
);
export type ImageSpec = Static<typeof ImageSpecSchema>;

/** A spec that does not describe a buildable image; `path` is a JSON-pointer-like location. */
export class ImageSpecError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`image${path}: ${reason}`);
    this.name = "ImageSpecError";
  }
}

/** A parsed `host[:port]/repo[:tag][@sha256:...]` reference. */
export interface ImageRef {
  /** host[:port], e.g. "registry-1.docker.io" or "127.0.0.1:5000" */
  registry: string;
  /** e.g. "library/python" */
  repository: string;
  /** Absent when the ref is pinned by digest only. */
  tag?: string;
  /** "sha256:<64 hex>"; when present it wins over the tag. */
  digest?: string;
}

export const DOCKER_HUB_REGISTRY = "registry-1.docker.io";
const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io", DOCKER_HUB_REGISTRY]);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$/;

export class ImageRefError extends Error {
  constructor(readonly ref: string, readonly reason: string) {
    super(`invalid image reference "${ref}": ${reason}`);
    this.name = "ImageRefError";
  }
}

/** The first path component names a registry only if it looks like a host (docker's rule). */
function looksLikeHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost" || component.startsWith("[");
}

/**
 * Parses a reference the way `docker pull` does: `python:3.11` means
 * `registry-1.docker.io/library/python:3.11`, a missing tag means `latest`.
 */
export function parseImageRef(ref: string): ImageRef {
  const fail = (reason: string): never => {
    throw new ImageRefError(ref, reason);
  };
  if (ref.length === 0 || ref.length > 1024) fail("must be 1 to 1024 characters");
  if (/\s/.test(ref)) fail("must not contain whitespace");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail('the digest must be "sha256:" followed by 64 lowercase hex digits');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/") && !rest.slice(colon).includes("]")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  const parts = rest.split("/");
  let registry = DOCKER_HUB_REGISTRY;
  if (parts.length > 1 && looksLikeHost(parts[0]!)) {
    registry = parts.shift()!;
    if (!HOST.test(registry)) fail(`registry host "${registry}" is not a valid host[:port]`);
    const port = registry.match(/:(\d+)$/)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65_535)) fail(`port ${port} is out of range`);
  }
  if (DOCKER_HUB_ALIASES.has(registry)) {
    registry = DOCKER_HUB_REGISTRY;
    if (parts.length === 1) parts.unshift("library");
  }
  if (parts.length === 0 || parts[0] === "") fail("the repository name is missing");
  for (const part of parts) {
    if (part !== part.toLowerCase()) fail(`repository "${parts.join("/")}" must be lowercase`);
    if (!PATH_COMPONENT.test(part)) {
      fail(`repository component "${part}" must be lowercase letters and digits separated by ".", "_", "__" or "-"`);
    }
  }
  const repository = parts.join("/");
  if (repository.length > 255) fail("the repository name is longer than 255 characters");
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) };
}

/** The fully qualified form, e.g. `registry-1.docker.io/library/python:3.11`. */
export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

// Package names become argv entries of apt-get / pip / npm; a leading "-" would be an option.
const APT_PACKAGE = /^[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+)?$/;
const NPM_PACKAGE = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*(?:@[^\s@]+)?$/;
// pip accepts names with extras and version specifiers, "name @ url" and plain URLs.
const PIP_PACKAGE = /^[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[A-Za-z0-9._, -]+\])?(?:\s*(?:===|==|>=|<=|~=|!=|>|<)\s*[A-Za-z0-9.*+!_-]+(?:\s*,\s*(?:===|==|>=|<=|~=|!=|>|<)\s*[A-Za-z0-9.*+!_-]+)*)?(?:\s*@\s*\S+)?(?:\s*;\s*[^\n\r;]+)?$/;
const PIP_URL = /^(?:git\+)?https?:\/\/\S+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkPackages(kind: "apt" | "pip" | "npm", packages: string[], path: string): void {
  const examples = { apt: '"python3-venv" or "curl=7.88.1-10"', pip: '"numpy", "torch==2.3.0" or "requests[socks]>=2.31"', npm: '"express" or "@scope/pkg@^1.2.0"' };
  packages.forEach((name, i) => {
    const ok = kind === "apt" ? APT_PACKAGE.test(name) : kind === "npm" ? NPM_PACKAGE.test(name) : PIP_PACKAGE.test(name) || PIP_URL.test(name);
    if (!ok) throw new ImageSpecError(`${path}/packages/${i}`, `"${name}" is not a valid ${kind} package (e.g. ${examples[kind]})`);
  });
}

function firstError(schema: TSchema, value: unknown, prefix: string): ImageSpecError | undefined {
  const error = Value.Errors(schema, value).First();
  return error ? new ImageSpecError(`${prefix}${error.path}`, error.message) : undefined;
}

/** Unions give "Expected union value"; check each step/base against its own kind for a useful error. */
function unionError<K extends string>(schemas: Record<K, TSchema>, value: unknown, path: string): ImageSpecError | undefined {
  const kind = (value as { kind?: unknown } | null)?.kind;
  if (typeof kind !== "string" || !Object.hasOwn(schemas, kind)) {
    return new ImageSpecError(`${path}/kind`, `must be one of ${Object.keys(schemas).map((k) => `"${k}"`).join(", ")}`);
  }
  return firstError(schemas[kind as K], value, path);
}

function firstSchemaError(value: unknown): ImageSpecError | undefined {
  const v = value as Partial<Record<"base" | "steps", unknown>> | null;
  if (v && typeof v === "object") {
    if (v.base !== undefined) {
      const err = unionError(BaseSchemas, v.base, "/base");
      if (err) return err;
    }
    if (Array.isArray(v.steps)) {
      for (const [i, step] of v.steps.entries()) {
        const err = unionError(StepSchemas, step, `/steps/${i}`);
        if (err) return err;
      }
    }
  }
  return firstError(ImageSpecSchema, value, "");
}

/**
 * Checks a spec and returns its normalized form: registry refs fully qualified (so `python:3.11`
 * and `docker.io/library/python:3.11` are the same image). Throws {@link ImageSpecError}.
 */
export function normalizeImageSpec(value: unknown): ImageSpec {
  const schemaError = firstSchemaError(value);
  if (schemaError) throw schemaError;
  const spec = value as ImageSpec;
  let base: ImageBase = spec.base.kind === "scratch" ? { kind: "scratch" } : { kind: "default" };
  if (spec.base.kind === "registry") {
    try {
      base = { kind: "registry", ref: formatImageRef(parseImageRef(spec.base.ref)) };
    } catch (err) {
      throw new ImageSpecError("/base/ref", err instanceof ImageRefError ? err.reason : String(err));
    }
  }
  const steps = spec.steps.map((step, i): ImageStep => {
    if (step.kind === "shell") {
      if (step.command.includes("\0")) throw new ImageSpecError(`/steps/${i}/command`, "must not contain NUL bytes");
      if (step.command.trim() === "") throw new ImageSpecError(`/steps/${i}/command`, "must not be blank");
      return { kind: "shell", command: step.command };
    }
    checkPackages(step.kind, step.packages, `/steps/${i}`);
    return { kind: step.kind, packages: [...step.packages] };
  });
  for (const [name, val] of Object.entries(spec.env)) {
    if (!ENV_NAME.test(name)) throw new ImageSpecError(`/env/${name}`, "names must match [A-Za-z_][A-Za-z0-9_]*");
    if (val.includes("\0")) throw new ImageSpecError(`/env/${name}`, "must not contain NUL bytes");
  }
  return { base, steps, env: { ...spec.env } };
}

/**
 * The image id: sha256 over the format version and the canonical JSON of the normalized spec
 * (keys sorted; steps and package lists keep their order because order changes the result),
 * truncated to 32 hex characters (128 bits: collisions are not a practical concern).
 */
export function imageId(spec: unknown): string {
  const normalized = normalizeImageSpec(spec);
  return createHash("sha256")
    .update(`${IMAGE_FORMAT_VERSION}\n${canonicalJson(normalized)}`)
    .digest("hex")
    .slice(0, 32);
}

/** The spec of `new Image()` with nothing added. */
export function defaultImageSpec(): ImageSpec {
  return { base: { kind: "default" }, steps: [], env: {} };
}

export const IMAGE_ID_PATTERN = /^[a-f0-9]{32}$/;
