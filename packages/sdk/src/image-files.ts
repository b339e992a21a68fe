/**
 * Local files for images (`addLocalFile`, `addLocalDir`, a Dockerfile's build context): packed as
 * a deterministic tar.gz (sorted, owner 0, mtime 0, modes kept) named by its sha256, like code
 * bundles, so the image spec names the content and an unchanged file never makes a new image.
 * The bytes wait in this process until a build needs them: `client.buildImage` uploads the ones
 * its spec names that the gateway does not hold yet.
 */
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename, join, posix, relative, resolve, sep } from "node:path";
import { gzipSync } from "node:zlib";
import { copyObjects, type ImageSpec } from "@beta9/protocol";

export class ImageFilesError extends Error {
  override name = "ImageFilesError";
}

interface Entry {
  /** Path inside the archive, posix, no leading "./". */
  name: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  /** Absolute local path (files), or the link target (symlinks). */
  source: string;
}

function header(name: string, type: string, size: number, mode: number, linkname = ""): Buffer {
  const h = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number): void => void h.write(value, offset, length, "utf8");
  const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0";
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  put(type, 156, 1);
  put(linkname, 157, 100);
  put("ustar\0" + "00", 257, 8);
  put("        ", 148, 8);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
  return h;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

/** A PAX header carrying names that do not fit ustar's 100 bytes. */
function paxRecords(records: Record<string, string>): Buffer[] {
  const body = Buffer.concat(Object.entries(records).map(([key, value]) => {
    const text = ` ${key}=${value}\n`;
    let len = Buffer.byteLength(text) + 1;
    while (String(len).length + Buffer.byteLength(text) !== len) len = String(len).length + Buffer.byteLength(text);
    return Buffer.from(`${len}${text}`);
  }));
  return [header("PaxHeader", "x", body.length, 0o644), body, pad(body.length)];
}

function packTar(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const name = e.type === "dir" ? `${e.name}/` : e.name;
    const link = e.type === "symlink" ? e.source : "";
    const long: Record<string, string> = {};
    if (Buffer.byteLength(name) > 99) long.path = name;
    if (Buffer.byteLength(link) > 99) long.linkpath = link;
    if (Object.keys(long).length > 0) parts.push(...paxRecords(long));
    const data = e.type === "file" ? readFileSync(e.source) : Buffer.alloc(0);
    const short = (s: string) => Buffer.from(s).subarray(0, 99).toString("utf8");
    parts.push(header(short(name), { file: "0", dir: "5", symlink: "2" }[e.type], data.length, e.mode, short(link)), data, pad(data.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A `.dockerignore`-style matcher: `*`, `?`, `**`, `[…]`, `!` exceptions, last match wins. */
export function ignoreMatcher(patterns: readonly string[]): (path: string) => boolean {
  const rules = patterns
    .map((p) => p.trim())
    .filter((p) => p !== "" && !p.startsWith("#"))
    .map((p) => {
      const negate = p.startsWith("!");
      const pattern = posix.normalize((negate ? p.slice(1) : p).trim().replace(/^\/+/, "")).replace(/\/+$/, "");
      let re = "";
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i]!;
        if (c === "*" && pattern[i + 1] === "*") {
          re += pattern[i + 2] === "/" ? "(?:.*/)?" : ".*";
          i += pattern[i + 2] === "/" ? 2 : 1;
        } else if (c === "*") re += "[^/]*";
        else if (c === "?") re += "[^/]";
        else if (c === "[") {
          const end = pattern.indexOf("]", i + 1);
          if (end < 0) re += "\\[";
          else {
            re += `[${pattern.slice(i + 1, end).replace(/^!/, "^")}]`;
            i = end;
          }
        } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
      }
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path) => {
    let ignored = false;
    const prefixes = path.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
    for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) ignored = !rule.negate;
    return ignored;
  };
}

function entryOf(path: string, name: string, root: string): Entry {
  const st = lstatSync(path);
  const mode = st.mode & 0o7777;
  if (st.isDirectory()) return { name, type: "dir", mode, source: path };
  if (st.isFile()) return { name, type: "file", mode, source: path };
  if (st.isSymbolicLink()) {
    const target = readlinkSync(path);
    const inside = relative(root, resolve(join(path, ".."), target));
    if (target.startsWith("/") || inside === ".." || inside.startsWith(`..${sep}`)) {
      throw new ImageFilesError(`${path} is a symbolic link to ${target}, outside ${root}; images take links that stay inside the copied files`);
    }
    return { name, type: "symlink", mode: 0o777, source: target };
  }
  throw new ImageFilesError(`${path} is not a file, directory or symbolic link`);
}

/** Everything under `dir` not ignored, parents before children, sorted. */
function walk(dir: string, ignored: (rel: string) => boolean): Entry[] {
  const out: Entry[] = [];
  const visit = (rel: string): void => {
    const names = readdirSync(join(dir, rel)).sort();
    for (const name of names) {
      const child = rel ? `${rel}/${name}` : name;
      if (ignored(child)) continue;
      const entry = entryOf(join(dir, child), child, dir);
      out.push(entry);
      if (entry.type === "dir") visit(child);
    }
  };
  visit("");
  return out;
}

export interface PackedFiles {
  sha256: string;
  bytes: Buffer;
}

/**
 * Bytes of packed files by sha256 (see uploadImageFiles). Kept on globalThis under a registered
 * symbol: the CLI's client and a project's own copy of this SDK (which made the Image) share it.
 */
const PENDING = Symbol.for("beta9.image-files.pending");
const holder = globalThis as { [PENDING]?: Map<string, Buffer> };
const pending: Map<string, Buffer> = (holder[PENDING] ??= new Map());

function finish(entries: Entry[]): PackedFiles {
  const bytes = gzipSync(packTar(entries), { level: 6 });
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  pending.set(sha256, bytes);
  return { sha256, bytes };
}

/** Bytes packed elsewhere (the Python SDK's describe, for the CLI) to upload when a build names them. */
export function rememberImageFiles(bytes: Buffer): string {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  pending.set(sha256, bytes);
  return sha256;
}

/** A directory's contents (minus what `ignore` patterns name) as an uploadable archive. */
export function packDirectory(dir: string, ignore: readonly string[] = []): PackedFiles {
  const root = resolve(dir);
  let st;
  try {
    st = lstatSync(root);
  } catch {
    throw new ImageFilesError(`${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new ImageFilesError(`${dir} is not a directory`);
  return finish(walk(root, ignoreMatcher(ignore)));
}

/** One file, named by its base name in the archive. */
export function packFile(file: string): PackedFiles & { name: string } {
  const path = resolve(file);
  let st;
  try {
    st = lstatSync(path);
  } catch {
    throw new ImageFilesError(`${file}: no such file`);
  }
  if (!st.isFile()) throw new ImageFilesError(`${file} is not a regular file (use addLocalDir for a directory)`);
  const name = basename(path);
  return { ...finish([{ name, type: "file", mode: st.mode & 0o7777, source: path }]), name };
}

/** Minimal client surface, so this module does not depend on client.ts. */
export interface ObjectUploader {
  headObject(hash: string): Promise<boolean>;
  putObject(hash: string, bytes: Buffer): Promise<unknown>;
}

/** Uploads the packed files `spec` names that were made in this process and the gateway lacks. */
export async function uploadImageFiles(client: ObjectUploader, spec: ImageSpec): Promise<void> {
  const hashes = [...copyObjects(spec), ...(spec.base.kind === "dockerfile" && spec.base.context ? [spec.base.context] : [])];
  for (const hash of hashes) {
    const bytes = pending.get(hash);
    if (!bytes || (await client.headObject(hash))) continue;
    await client.putObject(hash, bytes);
  }
}
