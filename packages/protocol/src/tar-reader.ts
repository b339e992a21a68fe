/**
 * A strict, streaming reader of tar headers, shared by the gateway (code bundle uploads) and the
 * worker (image layers, code bundles), which both check an archive before GNU tar extracts it.
 *
 * The check is only as good as its agreement with tar, so this reads every header field the way
 * GNU tar 1.3x reads it (list.c read_header/from_header, xheader.c decode_record) and refuses,
 * naming the entry, every construct where the two could read different names:
 * - pax global headers (`g`) with any keyword but `comment` (tar applies them to every later
 *   entry), and a second pax `x`, GNU long name `L` or long link `K` header for one entry (tar
 *   keeps only the last one), or a long name together with a pax `path`;
 * - number fields tar reads differently from a plain octal reading (tar skips one leading NUL and
 *   blanks, and accepts base-256), malformed pax records (tar applies the records before the bad
 *   one and goes on), GNU.* pax keywords (sparse files, dumpdirs, volumes), header types it has no
 *   use for (`X`, `S`, `D`, `M`, `V`, vendor types extracted as files);
 * - data on anything but a regular file, a non-directory whose name ends in `/` (tar makes it a
 *   directory), names that are empty, hold NUL or are not UTF-8.
 * It also reports where tar stops reading (the first zero block, {@link TarReader.end}), so that
 * the caller can hand tar exactly the bytes that were checked and nothing after them.
 */

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char-device" | "block-device" | "fifo";

export interface TarEntry {
  name: string;
  type: TarEntryType;
  /** Link target for symlinks and hard links; "" otherwise. */
  linkname: string;
  /** Data bytes that follow the header (regular files only). */
  size: number;
}

export class TarFormatError extends Error {
  constructor(readonly reason: string, readonly entry?: string) {
    super(entry === undefined ? reason : `entry ${JSON.stringify(entry)}: ${reason}`);
    this.name = "TarFormatError";
  }
}

const BLOCK = 512;
/** Metadata (pax, long names) larger than this is refused; real ones are a few hundred bytes. */
export const MAX_TAR_META_BYTES = 1024 * 1024;

const TYPES: Record<string, TarEntryType> = {
  "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "char-device", "4": "block-device", "5": "dir", "6": "fifo",
};
const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeName(bytes: Uint8Array, what: string, entry?: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new TarFormatError(`${what} is not valid UTF-8`, entry);
  }
}

/** A NUL-terminated header string field (or a long-name block), as C reads it. */
function cString(buf: Buffer, what: string): string {
  const end = buf.indexOf(0);
  return decodeName(end < 0 ? buf : buf.subarray(0, end), what);
}

/** C isspace() in the C locale. */
const isSpace = (b: number): boolean => b === 0x20 || (b >= 0x09 && b <= 0x0d);
const isOctal = (b: number): boolean => b >= 0x30 && b <= 0x37;

/**
 * A numeric header field as GNU tar's from_header reads it: one leading NUL skipped, then blanks,
 * then octal digits (or, unless `octalOnly`, base-256 with the top bit set), then the end of the
 * field, a NUL or a blank. Forms tar also accepts but nothing writes today (negative base-256,
 * 1999's base-64) are refused here instead.
 */
export function tarNumber(field: Buffer, what: string, octalOnly = false): number {
  let i = field[0] === 0 ? 1 : 0;
  while (i < field.length && isSpace(field[i]!)) i++;
  if (i === field.length) throw new TarFormatError(`the ${what} field is blank`);
  let value = 0;
  const c = field[i]!;
  if (isOctal(c)) {
    while (i < field.length && isOctal(field[i]!)) value = value * 8 + (field[i++]! - 0x30);
  } else if (!octalOnly && c === 0x80) {
    value = 0; // positive base-256: the rest of the field, big-endian
    for (i++; i < field.length; i++) value = value * 256 + field[i]!;
  } else if (!octalOnly && (c === 0xff || c === 0x2b || c === 0x2d)) {
    throw new TarFormatError(`the ${what} field is negative or in an obsolete encoding`);
  }
  if (i < field.length && field[i] !== 0 && !isSpace(field[i]!)) throw new TarFormatError(`the ${what} field is not a number`);
  if (!Number.isSafeInteger(value)) throw new TarFormatError(`the ${what} field is too large`);
  return value;
}

/** GNU tar accepts the POSIX (unsigned) or the historic Sun (signed) byte sum. */
function checksumOk(h: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  let recorded: number;
  try {
    recorded = tarNumber(h.subarray(148, 156), "checksum", true);
  } catch {
    return false; // tar: a bad header, like a wrong sum
  }
  return recorded === unsigned || recorded === signed;
}

/**
 * Pax records ("%d key=value\n"), read as tar's decode_record reads them: tar stops quietly at a
 * NUL where a record should start and ignores what follows, so this does too; anything tar calls
 * malformed (it keeps the records before it) is refused.
 */
export function parsePaxRecords(data: Buffer): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  let start = 0;
  while (start < data.length) {
    let p = start;
    while (data[p] === 0x20 || data[p] === 0x09) p++;
    if (p >= data.length || data[p] === 0) break;
    const digitsStart = p;
    while (p < data.length && data[p]! >= 0x30 && data[p]! <= 0x39) p++;
    if (p === digitsStart) throw new TarFormatError("a pax header record has no length");
    const len = Number(data.toString("latin1", digitsStart, p));
    if (!Number.isSafeInteger(len) || len > data.length - start) throw new TarFormatError("a pax header record is longer than its header");
    const next = start + len;
    const afterLen = p;
    while (data[p] === 0x20 || data[p] === 0x09) p++;
    if (p === afterLen) throw new TarFormatError("a pax header record has no blank after its length");
    let eq = p;
    while (eq < next && data[eq] !== 0x3d && data[eq] !== 0) eq++;
    if (eq >= next || data[eq] !== 0x3d) throw new TarFormatError("a pax header record has no '='");
    if (data[next - 1] !== 0x0a) throw new TarFormatError("a pax header record does not end in a newline");
    out.push([decodeName(data.subarray(p, eq), "a pax keyword"), data.subarray(eq + 1, next - 1)]);
    start = next;
  }
  return out;
}

interface Meta {
  flag: string;
  size: number;
  chunks: Buffer[];
}

/**
 * Feed it the uncompressed archive with {@link push}, then call {@link finish}. Every entry goes
 * to `onEntry` (which may throw to refuse it) as soon as its header is read.
 */
export class TarReader {
  /** Bytes consumed so far. */
  offset = 0;
  /** Offset just past the first zero block: GNU tar reads nothing after it. */
  end: number | undefined;
  private readonly header = Buffer.alloc(BLOCK);
  private headerLen = 0;
  private skip = 0;
  private meta: Meta | undefined;
  private pax: Map<string, Buffer> | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;

  constructor(private readonly onEntry: (entry: TarEntry) => void) {}

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && this.end === undefined) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        if (this.meta) this.meta.chunks.push(Buffer.from(chunk.subarray(off, off + n)));
        this.skip -= n;
        off += n;
        this.offset += n;
        if (this.skip === 0 && this.meta) this.finishMeta();
        continue;
      }
      const n = Math.min(BLOCK - this.headerLen, chunk.length - off);
      chunk.copy(this.header, this.headerLen, off, off + n);
      this.headerLen += n;
      off += n;
      this.offset += n;
      if (this.headerLen === BLOCK) {
        this.headerLen = 0;
        this.onHeader(this.header);
      }
    }
  }

  /** Throws when the archive stopped in the middle of an entry or after a header with no entry. */
  finish(): void {
    // A missing end-of-archive marker is tolerated (GNU tar does too); ending inside an entry is not.
    if (this.end !== undefined) return;
    if (this.headerLen !== 0 || this.skip !== 0 || this.meta) throw new TarFormatError("the archive ends in the middle of an entry (truncated)");
    if (this.pax || this.longName !== undefined || this.longLink !== undefined) throw new TarFormatError("the archive ends after an extended header, with no entry for it");
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      if (this.pax || this.longName !== undefined || this.longLink !== undefined) throw new TarFormatError("the archive ends after an extended header, with no entry for it");
      this.end = this.offset;
      return;
    }
    if (!checksumOk(h)) throw new TarFormatError("header checksum mismatch (not a tar archive, or corrupt)");
    const flag = String.fromCharCode(h[156]!);
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      const size = tarNumber(h.subarray(124, 136), "size");
      if (size > MAX_TAR_META_BYTES) throw new TarFormatError("an extended header is larger than 1 MiB");
      this.meta = { flag, size, chunks: [] };
      this.skip = roundUp(size);
      if (this.skip === 0) this.finishMeta();
      return;
    }
    const type = TYPES[flag];
    const name = this.entryName(h);
    if (!type) throw new TarFormatError(`has the unsupported tar type ${JSON.stringify(flag)}`, name);
    if (name === "") throw new TarFormatError("has an empty name", name);
    if (name.includes("\0")) throw new TarFormatError("has a NUL byte in its name", name);
    if (type !== "dir" && name.endsWith("/")) throw new TarFormatError(`is a ${type} whose name ends in "/" (tar would make a directory)`, name);
    // tar takes a hard link's size as 0 whatever the field says; any size on a non-file is refused.
    const paxSize = this.pax?.get("size");
    const size = paxSize !== undefined ? paxNumber(paxSize, name) : tarNumber(h.subarray(124, 136), "size");
    if (type !== "file" && size !== 0) throw new TarFormatError(`is a ${type} that carries data`, name);
    const paxLink = this.pax?.get("linkpath");
    const linkname = paxLink !== undefined ? paxString(paxLink, "linkpath", name) : this.longLink ?? cString(h.subarray(157, 257), "a link name");
    if (linkname.includes("\0")) throw new TarFormatError("has a NUL byte in its link target", name);
    this.pax = undefined;
    this.longName = this.longLink = undefined;
    this.skip = type === "file" ? roundUp(size) : 0;
    this.onEntry({ name, type, linkname: type === "symlink" || type === "hardlink" ? linkname : "", size: type === "file" ? size : 0 });
  }

  private entryName(h: Buffer): string {
    const fromPax = this.pax?.get("path");
    if (fromPax !== undefined) return paxString(fromPax, "path", this.longName);
    if (this.longName !== undefined) return this.longName;
    const name = cString(h.subarray(0, 100), "an entry name");
    // Only POSIX ustar ("ustar\0") has a prefix field; GNU's "ustar  " uses those bytes for times.
    const isUstar = h.toString("latin1", 257, 263) === "ustar\0";
    const prefix = isUstar ? cString(h.subarray(345, 500), "an entry name prefix") : "";
    return prefix ? `${prefix}/${name}` : name;
  }

  private finishMeta(): void {
    const { flag, size, chunks } = this.meta!;
    this.meta = undefined;
    const data = Buffer.concat(chunks).subarray(0, size);
    const next = this.pax?.get("path") !== undefined ? paxString(this.pax.get("path")!, "path") : this.longName;
    if (flag === "g") {
      for (const [key] of parsePaxRecords(data)) {
        if (key !== "comment") throw new TarFormatError(`a pax global header sets "${key}", which GNU tar would apply to every later entry; global headers are refused`);
      }
    } else if (flag === "x") {
      if (this.pax) throw new TarFormatError("has two pax extended headers (GNU tar would use only the last)", next);
      this.pax = new Map();
      for (const [key, value] of parsePaxRecords(data)) {
        if (key.startsWith("GNU.")) throw new TarFormatError(`has the pax keyword "${key}" (sparse files, dumpdirs and volumes are refused)`, next);
        this.pax.set(key, value); // a repeated key: the last one wins, as in tar
      }
      if (this.pax.has("path") && this.longName !== undefined) throw new TarFormatError("has both a GNU long name and a pax path", this.longName);
      if (this.pax.has("linkpath") && this.longLink !== undefined) throw new TarFormatError("has both a GNU long link name and a pax linkpath", next);
    } else if (flag === "L") {
      if (this.longName !== undefined) throw new TarFormatError("has two GNU long name headers (GNU tar would use only the last)", this.longName);
      if (this.pax?.has("path")) throw new TarFormatError("has both a GNU long name and a pax path", next);
      this.longName = cString(data, "a long entry name");
    } else {
      if (this.longLink !== undefined) throw new TarFormatError("has two GNU long link headers (GNU tar would use only the last)", next);
      if (this.pax?.has("linkpath")) throw new TarFormatError("has both a GNU long link name and a pax linkpath", next);
      this.longLink = cString(data, "a long link name");
    }
  }
}

const roundUp = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

function paxString(value: Buffer, key: string, entry?: string): string {
  if (value.includes(0)) throw new TarFormatError(`has a NUL byte in its pax ${key}`, entry);
  return decodeName(value, `the pax ${key}`, entry);
}

/** tar ignores a pax size that is not all decimal digits (and keeps the header's): refused. */
function paxNumber(value: Buffer, entry: string): number {
  const text = value.toString("latin1");
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new TarFormatError(`has a bad pax size ${JSON.stringify(text)}`, entry);
  return n;
}
