/** Builds tar archives byte by byte for tests, including the malformed ones real tar refuses to write. */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

export interface TarEntry {
  name: string;
  /** "0" file, "5" directory, "2" symlink, "1" hard link, "3" char device, "x" pax header. */
  type?: string;
  data?: Buffer | string;
  link?: string;
}

function header(name: string, type: string, size: number, link = ""): Buffer {
  const block = Buffer.alloc(512);
  block.write(name.slice(0, 100), 0, "utf8");
  block.write("0000644\0", 100);
  block.write("0000000\0", 108);
  block.write("0000000\0", 116);
  block.write(size.toString(8).padStart(11, "0") + "\0", 124);
  block.write("00000000000\0", 136);
  block.write("        ", 148);
  block.write(type, 156);
  block.write(link.slice(0, 100), 157, "utf8");
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return block;
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

export function makeTar(entries: TarEntry[], options: { gzip?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? "");
    parts.push(header(entry.name, entry.type ?? "0", data.length, entry.link), pad(data));
  }
  parts.push(Buffer.alloc(1024));
  const tar = Buffer.concat(parts);
  return options.gzip ? gzipSync(tar) : tar;
}

/** A pax record list (`path=…`) as the data of an "x" entry. */
export function paxData(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => {
      const body = ` ${k}=${v}\n`;
      let len = body.length + 1;
      while (String(len).length + body.length !== len) len = String(len).length + body.length;
      return `${len}${body}`;
    })
    .join("");
}

export const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");
