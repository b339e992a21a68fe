/**
 * A raw tar writer for tests of hostile archives: any type flag, pax `x`/`g` and GNU `L`/`K`
 * headers, device numbers, and hand-made number fields (a size tar reads differently from a plain
 * octal reading). Used only by *.test.ts.
 */

export interface RawEntry {
  name: string;
  /** The type flag: "0" file (default), "1" hard link, "2" symlink, "3"/"4" devices, "5" dir, "6" fifo, "x", "g", "L", "K", ... */
  type?: string;
  data?: Buffer | string;
  link?: string;
  mode?: number;
  /** The raw 12-byte size field, instead of the octal length of `data`. */
  sizeField?: Buffer;
  /** The raw 6-byte magic; "ustar\0" by default. */
  magic?: string;
}

const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0";

export function rawHeader(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, "utf8");
  h.write(octal(e.mode ?? (e.type === "5" ? 0o755 : 0o644), 8), 100, "latin1");
  h.write(octal(0, 8), 108, "latin1");
  h.write(octal(0, 8), 116, "latin1");
  if (e.sizeField) e.sizeField.copy(h, 124, 0, 12);
  else h.write(octal(size, 12), 124, "latin1");
  h.write(octal(1_700_000_000, 12), 136, "latin1");
  h.write(e.type ?? "0", 156, "latin1");
  h.write(e.link ?? "", 157, 100, "utf8");
  h.write(e.magic ?? "ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  h.write(octal(1, 8), 329, "latin1"); // devmajor/devminor, for device entries
  h.write(octal(3, 8), 337, "latin1");
  return withChecksum(h);
}

/** Writes the (unsigned) checksum of a header whose other fields are set. */
export function withChecksum(h: Buffer): Buffer {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}

/** The entries in order, each header followed by its padded data; `end: false` leaves off the end marker. */
export function rawTar(entries: (RawEntry | Buffer)[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (Buffer.isBuffer(e)) {
      parts.push(e); // a pre-built block sequence
      continue;
    }
    const data = Buffer.from(e.data ?? "");
    parts.push(rawHeader(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (options.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Pax records ("%d key=value\n") for the data of an `x` or `g` header. */
export function pax(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => {
      const body = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(body) + 1;
      while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
      return `${len}${body}`;
    })
    .join("");
}

/** A 12-byte size field GNU tar reads as `size` (one leading NUL, then octal) and a plain octal reading as 0. */
export function leadingNulSize(size: number): Buffer {
  return Buffer.from("\0" + size.toString(8).padStart(10, "0") + "\0", "latin1");
}
