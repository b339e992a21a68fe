import assert from "node:assert/strict";
import { test } from "node:test";
import { parsePaxRecords, TarFormatError, TarReader, tarNumber, type TarEntry } from "./tar-reader.js";

const field = (text: string | number[], width = 12): Buffer => {
  const b = Buffer.alloc(width);
  (typeof text === "string" ? Buffer.from(text, "latin1") : Buffer.from(text)).copy(b);
  return b;
};

/** A ustar header block with a valid checksum. */
function header(name: string, type: string, size: number, link = ""): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write("0000644\0", 100, "latin1");
  h.write(size.toString(8).padStart(11, "0") + "\0", 124, "latin1");
  h.write(type, 156, "latin1");
  h.write(link, 157, 100, "utf8");
  h.write("ustar\x0000", 257, "latin1");
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}
const pad = (data: string): Buffer => {
  const b = Buffer.from(data);
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
};
const record = (k: string, v: string): string => {
  const body = ` ${k}=${v}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
};
const meta = (type: string, data: string): Buffer => Buffer.concat([header("meta", type, Buffer.byteLength(data)), pad(data)]);

function read(...blocks: Buffer[]): { entries: TarEntry[]; end: number | undefined } {
  const entries: TarEntry[] = [];
  const reader = new TarReader((e) => entries.push(e));
  reader.push(Buffer.concat(blocks));
  reader.finish();
  return { entries, end: reader.end };
}

test("number fields are read as GNU tar's from_header reads them", () => {
  assert.equal(tarNumber(field("00000001000\0"), "size"), 512);
  assert.equal(tarNumber(field("\x0000000001000"), "size"), 512); // one leading NUL is skipped
  assert.equal(tarNumber(field("   1000 \0"), "size"), 512); // leading blanks, a blank after
  assert.equal(tarNumber(field(""), "size"), 0);
  assert.equal(tarNumber(field([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0]), "size"), 512); // base-256
  assert.throws(() => tarNumber(field("12x"), "size"), TarFormatError);
  assert.throws(() => tarNumber(field([0xff, 0xff]), "size"), /negative/);
  assert.throws(() => tarNumber(field("+AAA"), "size"), /obsolete/);
  assert.throws(() => tarNumber(field("            "), "size"), /blank/);
  assert.throws(() => tarNumber(field([0x80, 0, 0]), "checksum", true), /not a number/);
});

test("pax records are read as GNU tar's decode_record reads them", () => {
  const records = parsePaxRecords(Buffer.from(`${record("path", "a=b")}${record("size", "3")}`));
  assert.deepEqual(records.map(([k, v]) => [k, v.toString()]), [["path", "a=b"], ["size", "3"]]);
  // tar stops quietly at a NUL where a record should start: what follows is ignored.
  assert.deepEqual(parsePaxRecords(Buffer.from(`${record("mtime", "1")}\0${record("path", "evil")}`)).map(([k]) => k), ["mtime"]);
  assert.throws(() => parsePaxRecords(Buffer.from("11 path=abc")), /newline/);
  assert.throws(() => parsePaxRecords(Buffer.from("9 pathab\n")), /'='/);
  assert.throws(() => parsePaxRecords(Buffer.from("99 path=a\n")), /longer/);
  assert.throws(() => parsePaxRecords(Buffer.from("x path=a\n")), /no length/);
});

test("names come from a pax path, else a GNU long name, else prefix/name; the end is the first zero block", () => {
  const { entries, end } = read(
    meta("x", record("path", "from/pax")), header("ignored", "0", 0),
    meta("L", "from/long\0"), header("ignored", "0", 0),
    meta("g", record("comment", "git archive")), header("plain", "2", 0, "target"),
    Buffer.alloc(512), header("after/the/end", "0", 0),
  );
  assert.deepEqual(entries.map((e) => [e.name, e.type, e.linkname]), [["from/pax", "file", ""], ["from/long", "file", ""], ["plain", "symlink", "target"]]);
  assert.equal(end, 512 * 10); // three entries of a meta header (2 blocks) and a header, then the zero block
});

const refused: [string, Buffer[], RegExp][] = [
  ["a pax global header with a path", [meta("g", record("path", "x")), header("a", "0", 0)], /global header sets "path"/],
  ["two pax headers for one entry", [meta("x", record("path", "a")), meta("x", record("mtime", "1")), header("b", "0", 0)], /two pax extended headers/],
  ["two GNU long names", [meta("L", "a\0"), meta("L", "b\0"), header("c", "0", 0)], /two GNU long name/],
  ["a long name and a pax path", [meta("L", "a\0"), meta("x", record("path", "b")), header("c", "0", 0)], /both a GNU long name and a pax path/],
  ["a GNU sparse keyword", [meta("x", record("GNU.sparse.name", "a")), header("c", "0", 0)], /GNU.sparse.name/],
  ["a Solaris X header", [meta("X", record("path", "a")), header("c", "0", 0)], /unsupported tar type "X"/],
  ["a non-directory named like a directory", [header("a/", "0", 0)], /ends in "\/"/],
  ["a symlink with data", [header("s", "2", 3, "t"), pad("abc")], /carries data/],
  ["a pax size that is not decimal", [meta("x", record("size", "0x10")), header("f", "0", 0)], /bad pax size/],
  ["a NUL in a pax path", [meta("x", record("path", "a\0b")), header("f", "0", 0)], /NUL/],
  ["an extended header with no entry", [meta("x", record("path", "a"))], /no entry/],
];
for (const [what, blocks, reason] of refused) {
  test(`refuses ${what}`, () => {
    assert.throws(() => read(...blocks, Buffer.alloc(1024)), (err: unknown) => err instanceof TarFormatError && reason.test(err.message));
  });
}

test("a header with a signed (Sun) checksum is read, as tar reads it", () => {
  const h = header("é", "0", 0); // bytes over 127 make the two sums differ
  let signed = 0;
  h.fill(0x20, 148, 156);
  for (const b of h) signed += b > 127 ? b - 256 : b;
  h.write(signed.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  assert.equal(read(h, Buffer.alloc(1024)).entries[0]?.name, "é");
});
