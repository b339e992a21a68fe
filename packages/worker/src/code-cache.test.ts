import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { BundleRefusedError, unpackBundle } from "./code-cache.js";
import { pax, rawTar, type RawEntry } from "./images/testing-tar.js";
import { tempDir } from "./images/testing.js";

let work: { path: string; cleanup: () => Promise<void> };
let n = 0;
before(async () => (work = await tempDir("code-cache")));
after(async () => work.cleanup());

/** An archive file (its bytes may name the sentinel dir), an empty target dir and a sentinel dir beside it. */
async function scene(bytes: Buffer | ((outside: string) => Buffer)): Promise<{ archive: string; dir: string; outside: string }> {
  const base = join(work.path, `case-${++n}`);
  const outside = join(base, "outside");
  await mkdir(join(base, "target"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(base, "bundle.tar"), typeof bytes === "function" ? bytes(outside) : bytes);
  return { archive: join(base, "bundle.tar"), dir: join(base, "target"), outside };
}

test("a real GNU tar.gz with long names and inner symlinks unpacks", async () => {
  const src = join(work.path, "src");
  const deep = join(src, "a".repeat(70), "b".repeat(70));
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, "handler.ts"), "export const x = 1;\n");
  await symlink("a".repeat(70), join(src, "short"));
  const bytes = execFileSync("tar", ["--format=posix", "-cz", "-C", src, "."]);
  const s = await scene(bytes);
  await unpackBundle(s.archive, s.dir);
  assert.equal(await readFile(join(s.dir, "short", "b".repeat(70), "handler.ts"), "utf8"), "export const x = 1;\n");
  assert.equal(await readlink(join(s.dir, "short")), "a".repeat(70));
});

const hostile: [string, (outside: string) => RawEntry[], RegExp][] = [
  ["a pax global header whose path goes through a symlink",
    (o) => [{ name: "l", type: "2", link: o }, { name: "pax_global_header", type: "g", data: pax({ path: "l/evil" }) }, { name: "harmless", data: "x" }], /global header sets "path"/],
  ["two pax headers for one entry", () => [{ name: "p1", type: "x", data: pax({ path: "ok" }) }, { name: "p2", type: "x", data: pax({ mtime: "1" }) }, { name: "../evil", data: "x" }], /two pax extended headers/],
  ["a file through an absolute symlink in the same bundle", (o) => [{ name: "l", type: "2", link: o }, { name: "l/evil", data: "x" }], /entry "l\/evil" goes through the absolute symlink/],
  ["a hard link out", () => [{ name: "h", type: "1", link: "../outside/keep" }], /".."/],
  ["a FIFO", () => [{ name: "f", type: "6" }], /FIFO/],
  ["a device node", () => [{ name: "d", type: "3" }], /device node/],
];
for (const [what, entries, reason] of hostile) {
  test(`a bundle with ${what} is refused, naming the entry, and nothing is written`, async () => {
    const s = await scene((outside) => gzipSync(rawTar(entries(outside))));
    await assert.rejects(unpackBundle(s.archive, s.dir), (err: unknown) => err instanceof BundleRefusedError && reason.test(err.message));
    assert.deepEqual(await readdir(s.dir), []);
    assert.deepEqual(await readdir(s.outside), []);
  });
}

test("bundle files named like whiteouts are ordinary files", async () => {
  const s = await scene(rawTar([{ name: ".wh.notes", data: "kept" }]));
  await unpackBundle(s.archive, s.dir);
  assert.equal(await readFile(join(s.dir, ".wh.notes"), "utf8"), "kept");
});
