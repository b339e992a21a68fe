/**
 * A streaming tar header reader. It passes the bytes through unchanged and records every entry's
 * name, type and link target, so a layer can be checked before GNU tar extracts it. It reads
 * names exactly as GNU tar does (ustar prefix, GNU long names, pax path/linkpath/size) and refuses
 * the archive features where the two could disagree (old GNU sparse files, data on link entries,
 * names that are not UTF-8), so that what we check is what tar writes.
 */
import { Transform, type TransformCallback } from "node:stream";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "device" | "fifo";

export interface TarEntry {
  name: string;
  type: TarEntryType;
  linkname: string;
  size: number;
}

export class TarFormatError extends Error {
  constructor(reason: string) {
    super(`malformed layer tar: ${reason}`);
    this.name = "TarFormatError";
  }
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "device", "4": "device", "5": "dir", "6": "fifo",
};
const MAX_META_BYTES = 1024 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(buf: Buffer): string {
  const end = buf.indexOf(0);
  try {
    return utf8.decode(end < 0 ? buf : buf.subarray(0, end));
  } catch {
    throw new TarFormatError("an entry name is not valid UTF-8");
  }
}

/** Octal, or GNU base-256 (high bit set) for values that do not fit. */
function number(field: Buffer): number {
  if ((field[0]! & 0x80) !== 0) {
    if (field[0] === 0xff) throw new TarFormatError("a negative number field");
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    if (!Number.isSafeInteger(value)) throw new TarFormatError("a size is too large");
    return value;
  }
  const s = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`bad number field "${s}"`);
  return parseInt(s, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return sum === number(header.subarray(148, 156));
}

/** "%d key=value\n" records. */
function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    const len = space < 0 ? NaN : parseInt(data.toString("latin1", off, space), 10);
    if (!Number.isSafeInteger(len) || len <= 0 || off + len > data.length) throw new TarFormatError("bad pax header");
    const record = utf8.decode(data.subarray(space + 1, off + len - 1));
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    off += len;
  }
  return out;
}

const roundUp = (n: number): number => Math.ceil(n / 512) * 512;

export class TarLister extends Transform {
  readonly entries: TarEntry[] = [];
  private readonly header = Buffer.alloc(512);
  private headerLen = 0;
  private skip = 0;
  private metaSize = 0;
  private meta: Buffer[] | undefined;
  private metaType = "";
  private pax: Record<string, string> = {};
  private longName: string | undefined;
  private longLink: string | undefined;
  private ended = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(chunk);
      done(null, chunk);
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    // A missing end-of-archive marker is tolerated (GNU tar does too); ending inside an entry is not.
    const clean = this.ended || (this.headerLen === 0 && this.skip === 0 && !this.meta);
    done(clean ? null : new TarFormatError("the archive ends in the middle of an entry (truncated)"));
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.ended) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        this.meta?.push(chunk.subarray(off, off + n));
        this.skip -= n;
        off += n;
        if (this.skip === 0 && this.meta) this.finishMeta();
        continue;
      }
      const n = Math.min(512 - this.headerLen, chunk.length - off);
      chunk.copy(this.header, this.headerLen, off, off + n);
      this.headerLen += n;
      off += n;
      if (this.headerLen === 512) {
        this.headerLen = 0;
        this.onHeader(this.header);
      }
    }
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      this.ended = true; // GNU tar stops at the first zero block too (without -i)
      return;
    }
    if (!checksumOk(h)) throw new TarFormatError("header checksum mismatch (not a tar archive, or corrupt)");
    const flag = String.fromCharCode(h[156]!);
    const size = this.pax.size !== undefined ? Number(this.pax.size) : number(h.subarray(124, 136));
    if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError("bad entry size");
    if (flag === "x" || flag === "L" || flag === "K") {
      if (size > MAX_META_BYTES) throw new TarFormatError("extended header too large");
      this.meta = [];
      this.metaType = flag;
      this.metaSize = size;
      this.skip = roundUp(size);
      if (this.skip === 0) this.finishMeta();
      return;
    }
    if (flag === "g") {
      this.skip = roundUp(size); // global pax headers carry no names GNU tar applies to extraction
      return;
    }
    const type = TYPES[flag];
    if (!type) throw new TarFormatError(`unsupported entry type "${flag}"`);
    if (type !== "file" && size !== 0) throw new TarFormatError(`a ${type} entry carries data`);
    this.entries.push({ name: this.entryName(h), type, linkname: this.pax.linkpath ?? this.longLink ?? text(h.subarray(157, 257)), size });
    this.pax = {};
    this.longName = this.longLink = undefined;
    this.skip = type === "file" ? roundUp(size) : 0;
  }

  private entryName(h: Buffer): string {
    const fromPax = this.pax["GNU.sparse.name"] ?? this.pax.path;
    if (fromPax !== undefined) return fromPax;
    if (this.longName !== undefined) return this.longName;
    const name = text(h.subarray(0, 100));
    // Only POSIX ustar ("ustar\0") has a prefix field; GNU's "ustar  " uses those bytes for times.
    const isUstar = h.toString("latin1", 257, 263) === "ustar\0";
    const prefix = isUstar ? text(h.subarray(345, 500)) : "";
    return prefix ? `${prefix}/${name}` : name;
  }

  private finishMeta(): void {
    const data = Buffer.concat(this.meta ?? []).subarray(0, this.metaSize);
    this.meta = undefined;
    if (this.metaType === "x") Object.assign(this.pax, parsePax(data));
    else if (this.metaType === "L") this.longName = text(data);
    else this.longLink = text(data);
  }
}
