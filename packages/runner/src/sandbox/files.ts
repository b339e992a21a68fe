/**
 * File operations of the sandbox daemon, confined to the sandbox's root. In a runc container the
 * root is "/" and the container's filesystem IS the sandbox: the host is simply not there. With
 * the process runtime (no isolation) the root is a directory of the host, so every path is
 * resolved inside it and refused when it (or a symlink on the way) leads out.
 *
 * Paths are as the sandbox sees them: absolute ("/tmp/x") or relative to the workdir
 * ("/workspace"). `..` never climbs above "/".
 */
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, realpath, rename, rm, stat, unlink } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { basename, dirname, join, posix, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import { randomBytes } from "node:crypto";
import type { FileInfo } from "@beta9/protocol";

export type { FileInfo };

export const WORKDIR = "/workspace";

/** A refusal the client can fix: answered with `status` and the catalogue `code`. */
export class SandboxOpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export class SandboxFiles {
  constructor(readonly root: string) {}

  /** The sandbox path (normalised, absolute) and where it is on this machine. */
  resolve(userPath: unknown): { path: string; real: string } {
    if (typeof userPath !== "string" || userPath.length === 0 || userPath.length > 4096 || userPath.includes("\0")) {
      throw new SandboxOpError(422, "VALIDATION_FAILED", "path must be a non-empty string of at most 4096 characters");
    }
    const path = posix.resolve(WORKDIR, userPath);
    return { path, real: this.root === "/" ? path : join(this.root, path) };
  }

  private inside(real: string): boolean {
    return this.root === "/" || real === this.root || real.startsWith(this.root + sep);
  }

  /** Refuses a path whose existing part resolves (through symlinks) outside the root. */
  private async confine(real: string, followFinal: boolean): Promise<void> {
    if (this.root === "/") return;
    let probe = followFinal ? real : dirname(real);
    for (;;) {
      try {
        const resolved = await realpath(probe);
        if (!this.inside(resolved)) throw new SandboxOpError(403, "AUTH_FORBIDDEN", "the path leads outside the sandbox");
        return;
      } catch (err) {
        if (err instanceof SandboxOpError) throw err;
        const parent = dirname(probe);
        if (parent === probe) return;
        probe = parent;
      }
    }
  }

  private static info(path: string, s: Awaited<ReturnType<typeof lstat>>): FileInfo {
    const type = s.isFile() ? "file" : s.isDirectory() ? "directory" : s.isSymbolicLink() ? "symlink" : "other";
    return { name: basename(path) || "/", path, type, size: Number(s.size), mode: Number(s.mode) & 0o7777, modifiedAt: s.mtime.toISOString() };
  }

  async stat(userPath: unknown): Promise<FileInfo> {
    const { path, real } = this.resolve(userPath);
    await this.confine(real, false);
    try {
      return SandboxFiles.info(path, await lstat(real));
    } catch (err) {
      throw notFound(err, path);
    }
  }

  /** A directory to run a process in (symlinks followed, but not out of the sandbox). */
  async directory(userPath: unknown): Promise<string> {
    const { path, real } = this.resolve(userPath);
    await this.confine(real, true);
    const s = await stat(real).catch((err: unknown) => {
      throw notFound(err, path);
    });
    if (!s.isDirectory()) throw new SandboxOpError(422, "VALIDATION_FAILED", `cwd ${path} is not a directory`);
    return real;
  }

  async list(userPath: unknown): Promise<FileInfo[]> {
    const { path, real } = this.resolve(userPath);
    await this.confine(real, true);
    let names: string[];
    try {
      names = (await readdir(real)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") throw new SandboxOpError(409, "CONFLICT", `${path} is not a directory`);
      throw notFound(err, path);
    }
    const items: FileInfo[] = [];
    for (const name of names) {
      try {
        items.push(SandboxFiles.info(posix.join(path, name), await lstat(join(real, name))));
      } catch {
        // removed while listing: not part of the answer
      }
    }
    return items;
  }

  async mkdir(userPath: unknown): Promise<FileInfo> {
    const { path, real } = this.resolve(userPath);
    await this.confine(real, true);
    try {
      await mkdir(real, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ENOTDIR") throw new SandboxOpError(409, "CONFLICT", `${path} exists and is not a directory`);
      throw err;
    }
    return SandboxFiles.info(path, await lstat(real));
  }

  async remove(userPath: unknown, recursive: boolean): Promise<void> {
    const { path, real } = this.resolve(userPath);
    if (path === "/") throw new SandboxOpError(422, "VALIDATION_FAILED", "the sandbox's root cannot be removed");
    // A symlink is removed itself, never what it points to.
    await this.confine(real, false);
    let s;
    try {
      s = await lstat(real);
    } catch (err) {
      throw notFound(err, path);
    }
    if (s.isDirectory()) {
      if (!recursive && (await readdir(real)).length > 0) throw new SandboxOpError(409, "CONFLICT", `${path} is a directory that is not empty; pass recursive`);
      await rm(real, { recursive: true, force: true });
    } else {
      await unlink(real);
    }
  }

  /** Opens a file for download; refuses directories. */
  async open(userPath: unknown): Promise<{ size: number; stream: NodeJS.ReadableStream }> {
    const { path, real } = this.resolve(userPath);
    await this.confine(real, true);
    let s;
    try {
      s = await stat(real);
    } catch (err) {
      throw notFound(err, path);
    }
    if (!s.isFile()) throw new SandboxOpError(409, "CONFLICT", `${path} is not a regular file`);
    return { size: s.size, stream: createReadStream(real) };
  }

  /**
   * Writes the request body to the file: streamed to a temporary file beside it, then renamed,
   * so a reader never sees half a file and a symlink at the path is replaced, not followed.
   */
  async write(userPath: unknown, body: IncomingMessage, mode?: number): Promise<FileInfo> {
    const { path, real } = this.resolve(userPath);
    if (path === "/") throw new SandboxOpError(422, "VALIDATION_FAILED", "path must name a file");
    await this.confine(real, false);
    try {
      await mkdir(dirname(real), { recursive: true });
    } catch (err) {
      throw new SandboxOpError(409, "CONFLICT", `cannot create the parent directory of ${path}: ${(err as Error).message}`);
    }
    const existing = await lstat(real).catch(() => undefined);
    if (existing?.isDirectory()) throw new SandboxOpError(409, "CONFLICT", `${path} is a directory`);
    const temp = join(dirname(real), `.${basename(real)}.${randomBytes(6).toString("hex")}.part`);
    try {
      await pipeline(body, createWriteStream(temp, { mode: mode ?? 0o644 }));
      await rename(temp, real);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return SandboxFiles.info(path, await lstat(real));
  }
}

function notFound(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT" || code === "ENOTDIR") return new SandboxOpError(404, "RESOURCE_NOT_FOUND", `No file ${path} in this sandbox`);
  return err;
}
