/**
 * Validation of code bundles (tar, optionally gzip-compressed) before they are accepted into the
 * object store. A bundle is unpacked inside containers later, so every entry must stay inside the
 * bundle root: no absolute paths, no `..`, no links that point outside, no device nodes.
 */
import { createReadStream } from "node:fs";
import { posix } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";

export class BundleError extends Error {
  override name = "BundleError";
}

const BLOCK = 512;
export const MAX_BUNDLE_ENTRIES = 200_000;

/** Rejects a path that is absolute or climbs out of the root; returns it normalized. */
export function checkEntryPath(raw: string, what = "entry"): string {
  if (raw.includes("\0")) throw new BundleError(`${what} ${JSON.stringify(raw)} contains a NUL byte`);
  if (raw.startsWith("/") || /^[A-Za-z]:[\\/]/.test(raw) || raw.startsWith("\\")) {
    throw new BundleError(`${what} ${JSON.stringify(raw)} is an absolute path; bundle paths must be relative`);
  }
  if (raw.split(/[\\/]/).includes("..")) {
    throw new BundleError(`${what} ${JSON.stringify(raw)} contains "..", which would escape the bundle root`);
  }
  return posix.normalize(raw);
}

function checkLinkTarget(entry: string, target: string, hard: boolean): void {
  if (target.startsWith("/")) {
    throw new BundleError(`link ${JSON.stringify(entry)} points to the absolute path ${JSON.stringify(target)}`);
  }
  const resolved = hard ? posix.normalize(target) : posix.normalize(posix.join(posix.dirname(entry), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw new BundleError(`link ${JSON.stringify(entry)} points outside the bundle (${JSON.stringify(target)})`);
  }
}

function readString(block: Buffer, offset: number, length: number): string {
  const slice = block.subarray(offset, offset + length);
  const end = slice.indexOf(0);
  return slice.subarray(0, end === -1 ? length : end).toString("utf8");
}

function readSize(block: Buffer): number {
  const field = block.subarray(124, 136);
  if ((field[0]! & 0x80) !== 0) throw new BundleError("entry sizes in base-256 form are not supported");
  const text = readString(block, 124, 12).trim();
  const size = text === "" ? 0 : Number.parseInt(text, 8);
  if (!Number.isFinite(size) || size < 0) throw new BundleError("an entry header has an invalid size field");
  return size;
}

function checksumOk(block: Buffer): boolean {
  const stored = Number.parseInt(readString(block, 148, 8).trim(), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return stored === sum;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1) break;
    const length = Number.parseInt(data.subarray(pos, space).toString(), 10);
    if (!Number.isFinite(length) || length <= 0) throw new BundleError("a pax header record is malformed");
    const record = data.subarray(space + 1, pos + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += length;
  }
  return out;
}

export interface BundleSummary {
  entries: number;
  files: number;
  bytes: number;
}

/** A streaming tar checker: feed it the (decompressed) bytes; `finish()` returns the summary. */
class TarChecker extends Writable {
  private pending = Buffer.alloc(0);
  private skip = 0; // data bytes (incl. padding) still to pass over
  private collect: { kind: "pax" | "longname" | "longlink"; size: number; chunks: Buffer[]; got: number } | undefined;
  private nextPath: string | undefined;
  private nextLink: string | undefined;
  private ended = false;
  readonly summary: BundleSummary = { entries: 0, files: 0, bytes: 0 };

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    try {
      this.consume(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  private consume(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length > 0) {
      if (this.ended) return; // bytes after the end marker are padding
      if (this.skip > 0) {
        const n = Math.min(this.skip, buf.length);
        if (this.collect && this.collect.got < this.collect.size) {
          const take = Math.min(n, this.collect.size - this.collect.got);
          this.collect.chunks.push(buf.subarray(0, take));
          this.collect.got += take;
        }
        this.skip -= n;
        buf = buf.subarray(n);
        if (this.skip === 0 && this.collect) this.finishCollect();
        continue;
      }
      if (buf.length < BLOCK) break;
      this.header(buf.subarray(0, BLOCK));
      buf = buf.subarray(BLOCK);
    }
    this.pending = Buffer.from(buf);
  }

  private finishCollect(): void {
    const { kind, chunks } = this.collect!;
    const data = Buffer.concat(chunks);
    this.collect = undefined;
    if (kind === "pax") {
      const pax = parsePax(data);
      if (pax.path !== undefined) this.nextPath = pax.path;
      if (pax.linkpath !== undefined) this.nextLink = pax.linkpath;
    } else {
      const text = data.toString("utf8").replace(/\0+$/, "");
      if (kind === "longname") this.nextPath = text;
      else this.nextLink = text;
    }
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      this.ended = true;
      return;
    }
    if (!checksumOk(block)) throw new BundleError("not a tar archive (a header checksum does not match)");
    const size = readSize(block);
    const type = String.fromCharCode(block[156]!);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    const meta = { x: "pax", g: "pax", L: "longname", K: "longlink" } as const;
    if (type in meta) {
      if (size > 1024 * 1024) throw new BundleError("a tar metadata header is larger than 1 MiB");
      const kind = meta[type as keyof typeof meta];
      // Global pax headers apply to no single entry; read past them without keeping anything.
      this.collect = type === "g" ? undefined : { kind, size, chunks: [], got: 0 };
      this.skip = padded;
      if (padded === 0 && this.collect) this.finishCollect();
      return;
    }
    // Only POSIX ustar ("ustar\0") has a name prefix field; GNU tar keeps timestamps there.
    const posixUstar = block.subarray(257, 263).toString("latin1") === "ustar\0";
    const prefix = posixUstar ? readString(block, 345, 155) : "";
    const name = this.nextPath ?? (prefix ? `${prefix}/${readString(block, 0, 100)}` : readString(block, 0, 100));
    const link = this.nextLink ?? readString(block, 157, 100);
    this.nextPath = undefined;
    this.nextLink = undefined;
    this.summary.entries += 1;
    if (this.summary.entries > MAX_BUNDLE_ENTRIES) throw new BundleError(`more than ${MAX_BUNDLE_ENTRIES} entries`);
    const path = checkEntryPath(name);
    switch (type) {
      case "0": case "\0": case "7":
        this.summary.files += 1;
        this.summary.bytes += size;
        break;
      case "5":
        break;
      case "1":
        checkLinkTarget(path, checkEntryPath(link, "hard link target"), true);
        break;
      case "2":
        checkLinkTarget(path, link, false);
        break;
      case "3": case "4": case "6":
        throw new BundleError(`entry ${JSON.stringify(path)} is a device node or FIFO; bundles hold files, directories and links`);
      default:
        throw new BundleError(`entry ${JSON.stringify(path)} has the unsupported tar type ${JSON.stringify(type)}`);
    }
    this.skip = padded;
  }

  finish(): BundleSummary {
    if (this.summary.entries === 0 && !this.ended) throw new BundleError("not a tar archive (too short to hold a tar header)");
    if (this.collect || this.skip > 0 || (this.pending.length > 0 && !this.ended)) {
      throw new BundleError("the archive is truncated");
    }
    return this.summary;
  }
}

/** Checks a bundle file on disk (tar or tar.gz); throws {@link BundleError} with the reason. */
export async function checkBundleFile(path: string): Promise<BundleSummary> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    createReadStream(path, { start: 0, end: 1 })
      .on("data", (c) => chunks.push(c as Buffer))
      .on("end", () => resolve(Buffer.concat(chunks)))
      .on("error", reject);
  });
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;
  const checker = new TarChecker();
  try {
    if (gzipped) await pipeline(createReadStream(path), createGunzip(), checker);
    else await pipeline(createReadStream(path), checker);
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError(gzipped ? `the gzip stream is corrupt (${(err as Error).message})` : (err as Error).message);
  }
  return checker.finish();
}
