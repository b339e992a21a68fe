/**
 * `Image`: the container image a workload runs in, described in code and built by the platform.
 * Immutable: every method returns a new Image, so a base can be shared and extended safely.
 * The id is a hash of the spec, so an unchanged image is never rebuilt.
 *
 * @example
 * const image = new Image().aptInstall(["ffmpeg"]).pipInstall(["numpy"]).env({ MODEL: "small" });
 * const fromHub = Image.fromRegistry("python:3.11-slim").run("python3 --version");
 */
import { imageId, normalizeImageSpec, type ImageSpec, type ImageStep } from "@beta9/protocol";

export class Image {
  private readonly spec: ImageSpec;

  /** The default base: Debian bookworm (minbase) with python3. */
  constructor(spec?: ImageSpec) {
    this.spec = spec ? normalizeImageSpec(spec) : { base: { kind: "default" }, steps: [], env: {} };
  }

  /**
   * An empty image: nothing but the runner's own node. The fastest to build and start, for
   * workloads written in JavaScript/TypeScript that need no system packages.
   */
  static scratch(): Image {
    return new Image({ base: { kind: "scratch" }, steps: [], env: {} });
  }

  /** An OCI image from a registry: `"python:3.11"`, `"ghcr.io/org/img:tag"`, `"repo@sha256:…"`. */
  static fromRegistry(ref: string): Image {
    return new Image({ base: { kind: "registry", ref }, steps: [], env: {} });
  }

  private with(step: ImageStep): Image {
    return new Image({ ...this.spec, steps: [...this.spec.steps, step] });
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
    return new Image({ ...this.spec, env: { ...this.spec.env, ...vars } });
  }

  toSpec(): ImageSpec {
    return normalizeImageSpec(this.spec);
  }

  get id(): string {
    return imageId(this.spec);
  }
}
