/**
 * `Image`: the container image a workload runs in, described in code and built by the platform.
 * Immutable: every method returns a new Image, so a base can be shared and extended safely.
 * The id is a hash of the spec, so an unchanged image is never rebuilt.
 *
 * @example
 * const image = new Image().aptInstall(["ffmpeg"]).pipInstall(["numpy"]).env({ MODEL: "small" });
 * const fromHub = Image.fromRegistry("python:3.11-slim").run("python3 --version");
 * const privateBase = Image.fromRegistry("ghcr.io/acme/base:1", { credentials: { username: "GHCR_USER", password: "GHCR_TOKEN" } });
 * const fromFile = Image.fromDockerfile("./Dockerfile").addLocalFile("./config.toml", "/etc/app/config.toml");
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { imageId, normalizeImageSpec, splitInstructions, type ImageSpec, type ImageStep, type RegistryCredentials } from "@beta9/protocol";
import { ImageFilesError, packDirectory, packFile } from "./image-files.js";

export { ImageFilesError } from "./image-files.js";
export type { RegistryCredentials } from "@beta9/protocol";

export interface RegistryOptions {
  /**
   * Names of workspace secrets (never the values: specs are hashed, listed and shown) holding the
   * pull credentials: `{ username: "REG_USER", password: "REG_PASSWORD" }`, or `{ secret: "REG_AUTH" }`
   * for one secret holding "user:password" or a registry token.
   */
  credentials?: RegistryCredentials;
}

export interface DockerfileOptions extends RegistryOptions {
  /** ARG values (`docker build --build-arg`). */
  buildArgs?: Record<string, string>;
  /** The build context COPY and ADD read from; default: the Dockerfile's directory. */
  context?: string;
}

/** Lines of a .dockerignore file, or none. */
function dockerignore(dir: string): string[] {
  try {
    return readFileSync(resolve(dir, ".dockerignore"), "utf8").split(/\r?\n/);
  } catch {
    return [];
  }
}

/**
 * Parts of an image that read local files. They are read when the spec is made (toSpec, id: at
 * deploy), never when the Image is constructed: a workload's module is also loaded inside its
 * container, where those files are not.
 */
type Deferred =
  | { kind: "dockerfile"; path: string; options: DockerfileOptions }
  | { kind: "file"; local: string; remote: string }
  | { kind: "dir"; local: string; remote: string; ignore: string[] };

function dockerfileBase(d: Extract<Deferred, { kind: "dockerfile" }>): ImageSpec["base"] {
  let dockerfile: string;
  try {
    dockerfile = readFileSync(d.path, "utf8");
  } catch (err) {
    throw new ImageFilesError(`cannot read the Dockerfile ${d.path}: ${(err as Error).message}`);
  }
  const contextDir = d.options.context !== undefined ? resolve(d.options.context) : dirname(d.path);
  // Only a Dockerfile that copies files needs its context uploaded (and made part of the id).
  const copies = splitInstructions(dockerfile).instructions.some((i) => i.keyword === "COPY" || i.keyword === "ADD");
  const context = copies ? packDirectory(contextDir, dockerignore(contextDir)).sha256 : undefined;
  const { buildArgs, credentials } = d.options;
  return { kind: "dockerfile", dockerfile, ...(context && { context }), ...(buildArgs && { buildArgs }), ...(credentials && { credentials }) };
}

function localStep(d: Exclude<Deferred, { kind: "dockerfile" }>): ImageStep {
  if (d.kind === "file") {
    const packed = packFile(d.local);
    return { kind: "copy", object: packed.sha256, src: [packed.name], dest: d.remote };
  }
  return { kind: "copy", object: packDirectory(d.local, d.ignore).sha256, src: ["."], dest: d.remote.endsWith("/") ? d.remote : `${d.remote}/` };
}

const absolute = (what: string, remote: string): string => {
  if (!remote.startsWith("/")) throw new ImageFilesError(`${what}: the path in the image must be absolute, got ${JSON.stringify(remote)}`);
  return remote;
};

export class Image {
  // Not readonly only so that derive() can fill a fresh Image; no method changes an Image.
  private spec: ImageSpec;
  private deferredBase: Extract<Deferred, { kind: "dockerfile" }> | undefined;
  /** Steps in order; local files as Deferred until the spec is made. */
  private parts: (ImageStep | Exclude<Deferred, { kind: "dockerfile" }>)[];

  /** The default base: Debian bookworm (minbase) with python3. */
  constructor(spec?: ImageSpec) {
    this.spec = spec ? normalizeImageSpec(spec) : { base: { kind: "default" }, steps: [], env: {} };
    this.deferredBase = undefined;
    this.parts = [...this.spec.steps];
  }

  /** A new Image like this one with `change` applied. */
  private derive(change: { parts?: Image["parts"]; env?: Record<string, string>; deferredBase?: Image["deferredBase"] }): Image {
    const next = new Image();
    next.spec = { ...this.spec, env: change.env ?? this.spec.env, steps: [] };
    next.deferredBase = change.deferredBase ?? this.deferredBase;
    next.parts = change.parts ?? this.parts;
    return next;
  }

  /**
   * An empty image: nothing but the runner's own node. The fastest to build and start, for
   * workloads written in JavaScript/TypeScript that need no system packages.
   */
  static scratch(): Image {
    return new Image({ base: { kind: "scratch" }, steps: [], env: {} });
  }

  /** An OCI image from a registry: `"python:3.11"`, `"ghcr.io/org/img:tag"`, `"repo@sha256:…"`; private ones with `credentials`. */
  static fromRegistry(ref: string, options: RegistryOptions = {}): Image {
    return new Image({ base: { kind: "registry", ref, ...(options.credentials && { credentials: options.credentials }) }, steps: [], env: {} });
  }

  /**
   * An image built from a Dockerfile by the platform's own builder (no Docker needed). FROM,
   * RUN, COPY/ADD of local paths, ENV, ARG, WORKDIR, USER and SHELL are built; CMD, ENTRYPOINT,
   * EXPOSE, LABEL, VOLUME and STOPSIGNAL are ignored (the workload's handler is what runs);
   * anything else fails naming its line. COPY/ADD read the context directory (default: the
   * Dockerfile's, minus .dockerignore), uploaded with the build, so its content is part of the
   * image id. The file is read when the spec is made (toSpec, id, deploy).
   */
  static fromDockerfile(path: string, options: DockerfileOptions = {}): Image {
    return Image.scratch().derive({ deferredBase: { kind: "dockerfile", path: resolve(path), options } });
  }

  private with(step: ImageStep): Image {
    // Checked now, alone, so a bad step fails where it is written.
    normalizeImageSpec({ base: { kind: "scratch" }, steps: [step], env: {} });
    return this.derive({ parts: [...this.parts, step] });
  }

  /** Runs a shell command (`/bin/sh -c`) at build time. */
  run(...commands: string[]): Image {
    return commands.reduce<Image>((image, command) => image.with({ kind: "shell", command }), this);
  }

  aptInstall(packages: string[]): Image {
    return this.with({ kind: "apt", packages });
  }

  pipInstall(packages: string[]): Image {
    return this.with({ kind: "pip", packages });
  }

  npmInstall(packages: string[]): Image {
    return this.with({ kind: "npm", packages });
  }

  /** Environment variables set at build time and in every container of this image. */
  env(vars: Record<string, string>): Image {
    const env = { ...this.spec.env, ...vars };
    normalizeImageSpec({ base: { kind: "scratch" }, steps: [], env });
    return this.derive({ env });
  }

  /**
   * Copies a local file into the image at `remote` (absolute; ending in / copies into that
   * directory). The content is uploaded with the build and is part of the image id; the file is
   * read when the spec is made.
   */
  addLocalFile(local: string, remote: string): Image {
    return this.derive({ parts: [...this.parts, { kind: "file", local: resolve(local), remote: absolute("addLocalFile", remote) }] });
  }

  /** Copies a local directory's contents into the image directory `remote` (absolute); `ignore`: .dockerignore-style patterns. */
  addLocalDir(local: string, remote: string, options: { ignore?: string[] } = {}): Image {
    return this.derive({ parts: [...this.parts, { kind: "dir", local: resolve(local), remote: absolute("addLocalDir", remote), ignore: options.ignore ?? [] }] });
  }

  /** The normalized spec; local files are read and packed now (and uploaded by the build). */
  toSpec(): ImageSpec {
    const base = this.deferredBase ? dockerfileBase(this.deferredBase) : this.spec.base;
    const steps = this.parts.map((p) => (p.kind === "file" || p.kind === "dir" ? localStep(p) : p));
    return normalizeImageSpec({ base, steps, env: this.spec.env });
  }

  /**
   * The image id. An image pulled with credentials has a per-workspace id, which only the
   * gateway knows (the build answers it): this throws for such images.
   */
  get id(): string {
    return imageId(this.toSpec());
  }
}
