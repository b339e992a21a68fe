/**
 * Image references (`python:3.11`, `ghcr.io/org/img:tag`, `repo@sha256:…`), parsed the way
 * `docker pull` reads them.
 */
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
