/**
 * The canonical description of a container image (what `new Image()` in the SDK builds) and its
 * id. The id is a hash of the normalized spec, so the SDK, gateway and worker agree on it without
 * talking, and an unchanged image is never rebuilt (reference: beta9 §2.2).
 *
 * Specs never hold secret values: registry credentials are the names of workspace secrets (specs
 * are hashed, listed and returned by the API), and local files are content-addressed objects
 * uploaded beside the spec, so the id covers their content.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { DockerfileError, dockerfileToSpec } from "./dockerfile.js";
import { formatImageRef, ImageRefError, parseImageRef } from "./image-ref.js";
import { canonicalJson } from "./stub-config.js";

export * from "./image-ref.js";
export { DockerfileError, dockerfileToSpec, splitInstructions, type DockerfileOptions, type Instruction } from "./dockerfile.js";
export { expandEnvValue, expandWord, splitWords } from "./dockerfile-words.js";

/**
 * Salted into every id. Bump it whenever the same spec would build a different image (a new
 * default base, a different pip invocation, ...), so that old cached images are not reused.
 */
export const IMAGE_FORMAT_VERSION = "beta9-image/1";

const Packages = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 1000 });
const SecretName = Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", minLength: 1, maxLength: 256 });
const Sha256 = Type.String({ pattern: "^[a-f0-9]{64}$" });
const AbsPath = Type.String({ pattern: "^/", minLength: 1, maxLength: 4096 });
const UserSpec = Type.String({ pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$", maxLength: 256 });
const EnvMap = Type.Record(Type.String(), Type.String({ maxLength: 32_768 }));
/** Where and as whom a build command runs (Dockerfile WORKDIR, USER, and ARG values). */
const RunContext = { workdir: Type.Optional(AbsPath), user: Type.Optional(UserSpec), env: Type.Optional(EnvMap) };

/**
 * Pull credentials: names of workspace secrets, resolved by the gateway for the worker that
 * builds. `secret` holds "user:password", or a registry token (no colon) sent as a Bearer token;
 * `username` + `password` name one secret each.
 */
const CredentialSchemas = {
  secret: Type.Object({ secret: SecretName }, { additionalProperties: false }),
  pair: Type.Object({ username: SecretName, password: SecretName }, { additionalProperties: false }),
};
export const RegistryCredentialsSchema = Type.Union([CredentialSchemas.secret, CredentialSchemas.pair]);
export type RegistryCredentials = Static<typeof RegistryCredentialsSchema>;

const StepSchemas = {
  shell: Type.Object({ kind: Type.Literal("shell"), command: Type.String({ minLength: 1, maxLength: 65_536 }), ...RunContext }, { additionalProperties: false }),
  /** A command without a shell (Dockerfile RUN in exec form). */
  exec: Type.Object({
    kind: Type.Literal("exec"), argv: Type.Array(Type.String({ maxLength: 65_536 }), { minItems: 1, maxItems: 1024 }), ...RunContext,
  }, { additionalProperties: false }),
  /** Dockerfile ENV: values may refer to variables set before (the base image's too), as `${NAME}`. */
  env: Type.Object({ kind: Type.Literal("env"), vars: EnvMap }, { additionalProperties: false }),
  /** Paths `src` of the uploaded tar `object` copied to `dest` (a trailing / copies into a directory). */
  copy: Type.Object({
    kind: Type.Literal("copy"), object: Sha256,
    src: Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { minItems: 1, maxItems: 256 }), dest: AbsPath,
    chown: Type.Optional(UserSpec), chmod: Type.Optional(Type.String({ pattern: "^[0-7]{3,4}$" })),
  }, { additionalProperties: false }),
  apt: Type.Object({ kind: Type.Literal("apt"), packages: Packages }, { additionalProperties: false }),
  pip: Type.Object({ kind: Type.Literal("pip"), packages: Packages }, { additionalProperties: false }),
  npm: Type.Object({ kind: Type.Literal("npm"), packages: Packages }, { additionalProperties: false }),
};
export const ImageStepSchema = Type.Union(Object.values(StepSchemas));
export type ImageStep = Static<(typeof StepSchemas)[keyof typeof StepSchemas]>;

const BaseSchemas = {
  default: Type.Object({ kind: Type.Literal("default") }, { additionalProperties: false }),
  /** An empty root: enough for JavaScript workloads, which run on the runner's own node. */
  scratch: Type.Object({ kind: Type.Literal("scratch") }, { additionalProperties: false }),
  registry: Type.Object({
    kind: Type.Literal("registry"), ref: Type.String({ minLength: 1, maxLength: 1024 }), credentials: Type.Optional(RegistryCredentialsSchema),
  }, { additionalProperties: false }),
  /**
   * A Dockerfile's text, translated by normalization into a registry or scratch base and steps
   * (so a normalized spec never holds this kind). `context`: the uploaded build context.
   */
  dockerfile: Type.Object({
    kind: Type.Literal("dockerfile"), dockerfile: Type.String({ minLength: 1, maxLength: 1_048_576 }), context: Type.Optional(Sha256),
    buildArgs: Type.Optional(EnvMap), credentials: Type.Optional(RegistryCredentialsSchema),
  }, { additionalProperties: false }),
};
export const ImageBaseSchema = Type.Union(Object.values(BaseSchemas));
export type ImageBase = Static<(typeof BaseSchemas)[keyof typeof BaseSchemas]>;

export const ImageSpecSchema = Type.Object(
  {
    base: ImageBaseSchema,
    steps: Type.Array(ImageStepSchema, { maxItems: 256 }),
    env: EnvMap,
  },
  { additionalProperties: false },
);
export interface ImageSpec {
  base: ImageBase;
  steps: ImageStep[];
  env: Record<string, string>;
}

/** A spec that does not describe a buildable image; `path` is a JSON-pointer-like location. */
export class ImageSpecError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`image${path}: ${reason}`);
    this.name = "ImageSpecError";
  }
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

function checkEnv(env: Record<string, string>, path: string): Record<string, string> {
  for (const [name, val] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) throw new ImageSpecError(`${path}/${name}`, "names must match [A-Za-z_][A-Za-z0-9_]*");
    if (val.includes("\0")) throw new ImageSpecError(`${path}/${name}`, "must not contain NUL bytes");
  }
  return { ...env };
}

function checkPath(raw: string, path: string, absolute: boolean): string {
  if (raw.includes("\0")) throw new ImageSpecError(path, "must not contain NUL bytes");
  if (absolute) {
    const dir = raw.endsWith("/") && raw !== "/";
    return `${posix.normalize(raw).replace(/\/+$/, "") || "/"}${dir ? "/" : ""}`;
  }
  const normalized = posix.normalize(raw).replace(/\/+$/, "") || ".";
  if (raw.startsWith("/") || normalized === ".." || normalized.startsWith("../")) throw new ImageSpecError(path, "must be a relative path inside the uploaded files");
  return normalized;
}

type RunFields = { workdir?: string; user?: string; env?: Record<string, string> };
function runContext(step: RunFields, path: string): RunFields {
  const env = step.env && Object.keys(step.env).length > 0 ? checkEnv(step.env, `${path}/env`) : undefined;
  return {
    ...(step.workdir !== undefined && step.workdir !== "/" && { workdir: checkPath(step.workdir, `${path}/workdir`, true).replace(/\/$/, "") }),
    ...(step.user !== undefined && { user: step.user }),
    ...(env && { env }),
  };
}

function normalizeStep(step: ImageStep, i: number): ImageStep {
  const path = `/steps/${i}`;
  switch (step.kind) {
    case "shell":
      if (step.command.includes("\0")) throw new ImageSpecError(`${path}/command`, "must not contain NUL bytes");
      if (step.command.trim() === "") throw new ImageSpecError(`${path}/command`, "must not be blank");
      return { kind: "shell", command: step.command, ...runContext(step, path) };
    case "exec":
      step.argv.forEach((a, j) => {
        if (a.includes("\0")) throw new ImageSpecError(`${path}/argv/${j}`, "must not contain NUL bytes");
      });
      if (step.argv[0]!.trim() === "") throw new ImageSpecError(`${path}/argv/0`, "must name a program");
      return { kind: "exec", argv: [...step.argv], ...runContext(step, path) };
    case "env":
      if (Object.keys(step.vars).length === 0) throw new ImageSpecError(`${path}/vars`, "must set at least one variable");
      return { kind: "env", vars: checkEnv(step.vars, `${path}/vars`) };
    case "copy":
      return {
        kind: "copy", object: step.object, src: step.src.map((src, j) => checkPath(src, `${path}/src/${j}`, false)),
        dest: checkPath(step.dest, `${path}/dest`, true),
        ...(step.chown !== undefined && { chown: step.chown }), ...(step.chmod !== undefined && { chmod: step.chmod.padStart(4, "0") }),
      };
    default:
      checkPackages(step.kind, step.packages, path);
      return { kind: step.kind, packages: [...step.packages] };
  }
}

function normalizeCredentials(c: RegistryCredentials): RegistryCredentials {
  return "secret" in c ? { secret: c.secret } : { username: c.username, password: c.password };
}

/** A Dockerfile base becomes the base and first steps it stands for. */
function expandDockerfile(spec: ImageSpec): ImageSpec {
  if (spec.base.kind !== "dockerfile") return spec;
  const { dockerfile, context, buildArgs, credentials } = spec.base;
  try {
    const translated = dockerfileToSpec(dockerfile, {
      ...(context !== undefined && { context }), ...(buildArgs && { buildArgs }), ...(credentials && { credentials }),
    });
    return { base: translated.base, steps: [...translated.steps, ...spec.steps], env: spec.env };
  } catch (err) {
    if (err instanceof DockerfileError) throw new ImageSpecError("/base/dockerfile", err.message);
    throw err;
  }
}

/**
 * Checks a spec and returns its normalized form: registry refs fully qualified (so `python:3.11`
 * and `docker.io/library/python:3.11` are the same image), a Dockerfile translated into base and
 * steps, defaults left out. Throws {@link ImageSpecError}.
 */
export function normalizeImageSpec(value: unknown): ImageSpec {
  let schemaError = firstSchemaError(value);
  if (schemaError) throw schemaError;
  const spec = expandDockerfile(value as ImageSpec);
  if (spec !== value && (schemaError = firstSchemaError(spec))) throw schemaError;
  let base: ImageBase = spec.base.kind === "scratch" ? { kind: "scratch" } : { kind: "default" };
  if (spec.base.kind === "registry") {
    try {
      base = {
        kind: "registry", ref: formatImageRef(parseImageRef(spec.base.ref)),
        ...(spec.base.credentials && { credentials: normalizeCredentials(spec.base.credentials) }),
      };
    } catch (err) {
      throw new ImageSpecError("/base/ref", err instanceof ImageRefError ? err.reason : String(err));
    }
  }
  const steps = spec.steps.map(normalizeStep);
  return { base, steps, env: checkEnv(spec.env, "/env") };
}

/** The secret names a spec's pull credentials refer to (none for a public base). */
export function credentialSecretNames(spec: ImageSpec): string[] {
  const c = spec.base.kind === "registry" || spec.base.kind === "dockerfile" ? spec.base.credentials : undefined;
  if (!c) return [];
  return "secret" in c ? [c.secret] : [c.username, c.password];
}

/** The uploaded objects (local files, build contexts) a spec's copy steps read. */
export function copyObjects(spec: ImageSpec): string[] {
  return [...new Set(spec.steps.flatMap((s) => (s.kind === "copy" ? [s.object] : [])))];
}

/**
 * The image id: sha256 over the format version and the canonical JSON of the normalized spec
 * (keys sorted; steps and package lists keep their order because order changes the result),
 * truncated to 32 hex characters (128 bits: collisions are not a practical concern).
 *
 * An image pulled with credentials belongs to the workspace whose secrets pulled it: its id also
 * covers `workspaceId`, so another workspace naming the same secret names gets its own build
 * (with its own secrets) instead of the first workspace's private image. Such ids are the
 * gateway's to compute; without a workspace this throws.
 */
export function imageId(spec: unknown, workspaceId?: string): string {
  const normalized = normalizeImageSpec(spec);
  const scoped = credentialSecretNames(normalized).length > 0;
  if (scoped && workspaceId === undefined) {
    throw new ImageSpecError("/base/credentials", "an image pulled with credentials has a per-workspace id: use the id the gateway returns when it builds it");
  }
  return createHash("sha256")
    .update(`${IMAGE_FORMAT_VERSION}\n${scoped ? `workspace ${workspaceId}\n` : ""}${canonicalJson(normalized)}`)
    .digest("hex")
    .slice(0, 32);
}

/** The spec of `new Image()` with nothing added. */
export function defaultImageSpec(): ImageSpec {
  return { base: { kind: "default" }, steps: [], env: {} };
}

export const IMAGE_ID_PATTERN = /^[a-f0-9]{32}$/;
