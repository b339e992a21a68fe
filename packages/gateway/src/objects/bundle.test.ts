import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { BundleError, checkBundleFile, checkEntryPath } from "./bundle.js";
import { makeTar, paxData } from "../testing/tar.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-bundle-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(bytes: Buffer): string {
  const path = join(dir, `b${n++}`);
  writeFileSync(path, bytes);
  return path;
}

test("a real GNU tar.gz with long names, links inside and nested dirs is accepted", async () => {
  const src = join(dir, "src");
  const deep = join(src, "a".repeat(60), "b".repeat(60));
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, "handler.ts"), "export const x = 1;\n");
  writeFileSync(join(src, "readme.md"), "hi");
  symlinkSync("readme.md", join(src, "link.md"));
  const archive = join(dir, "real.tar.gz");
  execFileSync("tar", ["-czf", archive, "-C", src, "."]);
  const summary = await checkBundleFile(archive);
  assert.equal(summary.files, 2);
  assert.equal(summary.bytes, 22);
  const posix = join(dir, "real-posix.tar");
  execFileSync("tar", ["--format=posix", "-cf", posix, "-C", src, "."]);
  assert.equal((await checkBundleFile(posix)).files, 2);
});

test("an empty but well-formed tar is accepted", async () => {
  assert.equal((await checkBundleFile(file(makeTar([])))).entries, 0);
});

const rejected: [string, Buffer, RegExp][] = [
  ["absolute path", makeTar([{ name: "/etc/passwd", data: "x" }]), /absolute path/],
  ["dot-dot", makeTar([{ name: "a/../../x", data: "x" }]), /"\.\."/],
  ["dot-dot in gzip", makeTar([{ name: "../x", data: "x" }], { gzip: true }), /"\.\."/],
  ["windows drive path", makeTar([{ name: "C:\\x", data: "x" }]), /absolute path/],
  ["symlink to an absolute path", makeTar([{ name: "l", type: "2", link: "/etc/shadow" }]), /absolute path/],
  ["symlink climbing out", makeTar([{ name: "a/l", type: "2", link: "../../x" }]), /outside the bundle/],
  ["hard link out", makeTar([{ name: "h", type: "1", link: "../x" }]), /"\.\."/],
  // Each target looks inside, but links reached through links climb out on a host that follows them.
  ["entry through a symlink", makeTar([{ name: "s", type: "2", link: "." }, { name: "s/e1", type: "2", link: ".." }]), /passes through the symlink "s"/],
  ["link target through a symlink", makeTar([{ name: "e1", type: "2", link: "." }, { name: "e2", type: "2", link: "e1/.." }]), /points through the symlink "e1"/],
  ["symlink replacing a used directory", makeTar([{ name: "d/f", data: "x" }, { name: "d", type: "2", link: "." }]), /replaces a directory/],
  ["device node", makeTar([{ name: "dev", type: "3" }]), /device node/],
  ["fifo", makeTar([{ name: "f", type: "6" }]), /device node or FIFO/],
  ["pax path escaping", makeTar([{ name: "pax", type: "x", data: paxData({ path: "../../evil" }) }, { name: "ok", data: "x" }]), /"\.\."/],
  ["pax linkpath escaping", makeTar([{ name: "pax", type: "x", data: paxData({ linkpath: "/etc" }) }, { name: "l", type: "2", link: "ok" }]), /absolute/],
  ["GNU long name escaping", makeTar([{ name: "././@LongLink", type: "L", data: "../evil\0" }, { name: "short", data: "x" }]), /"\.\."/],
  ["too short for a header", Buffer.from("hello"), /not a tar archive/],
  ["not a tar", Buffer.from("just some text, certainly not a tar archive".repeat(20)), /not a tar archive/],
  ["truncated", makeTar([{ name: "big", data: "x".repeat(5000) }]).subarray(0, 1536), /truncated/],
  ["corrupt gzip", Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(100, 7)]), /gzip/],
];

for (const [what, bytes, reason] of rejected) {
  test(`rejected: ${what}`, async () => {
    await assert.rejects(checkBundleFile(file(bytes)), (err: unknown) => err instanceof BundleError && reason.test(err.message));
  });
}

test("checkEntryPath normalizes harmless paths", () => {
  assert.equal(checkEntryPath("./a//b/"), "a/b/");
  assert.throws(() => checkEntryPath("a\0b"), BundleError);
});

/** The finding's shapes and a size field tar reads differently from a plain octal reading. */
const readAsTarDoes: [string, Buffer, RegExp][] = [
  ["a pax global header naming a path (tar applies it to every later entry)",
    makeTar([{ name: "pax_global_header", type: "g", data: paxData({ path: "../../evil" }) }, { name: "harmless", data: "x" }]), /global header sets "path"/],
  ["two pax headers for one entry (tar keeps only the last)",
    makeTar([{ name: "p1", type: "x", data: paxData({ path: "innocent" }) }, { name: "p2", type: "x", data: paxData({ mtime: "1" }) }, { name: "../evil", data: "x" }]), /two pax extended headers/],
  ["a size with a leading NUL that hides a header from a plain octal reading", leadingNulDesync(), /"\.\."/],
];

/** "lead" holds 512 bytes for tar (the decoy's header), so tar's next entry is "../evil". */
function leadingNulDesync(): Buffer {
  const tar = makeTar([{ name: "lead" }, { name: "decoy", data: Buffer.alloc(512) }]);
  const evil = makeTar([{ name: "../evil" }]).subarray(0, 512);
  const lead = Buffer.from(tar.subarray(0, 512));
  lead.write("\x0000000001000\0", 124, "latin1");
  lead.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of lead) sum += b;
  lead.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return Buffer.concat([lead, tar.subarray(512, 1024), evil, Buffer.alloc(1024)]);
}

for (const [what, bytes, reason] of readAsTarDoes) {
  test(`rejected: ${what}`, async () => {
    await assert.rejects(checkBundleFile(file(bytes)), (err: unknown) => err instanceof BundleError && reason.test(err.message));
  });
}

test("a pax global header carrying only a comment (git archive) is accepted", async () => {
  const bytes = makeTar([{ name: "pax_global_header", type: "g", data: paxData({ comment: "0123abcd" }) }, { name: "a.ts", data: "x" }]);
  assert.equal((await checkBundleFile(file(bytes))).files, 1);
});
