/** The commit logic on its own: last writer wins per path, file/directory replacement, listings. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Beta9Error, type VolumeChange } from "@beta9/protocol";
import { ancestors, Manifest } from "./manifest.js";

const h = (c: string) => c.repeat(64);
const put = (path: string, hash: string, size = 1, mode = 0o644, mtime = 1000): VolumeChange => ({ path, hash, size, mode, mtime });
const del = (path: string, recursive = false): VolumeChange => ({ path, delete: true, ...(recursive && { recursive }) });

test("ancestors of a path, nearest last", () => {
  assert.deepEqual(ancestors("a/b/c"), ["a", "a/b"]);
  assert.deepEqual(ancestors("a"), []);
});

test("a later change to a path replaces the earlier one whole; sizes and counts follow", () => {
  const m = new Manifest();
  m.apply([put("x", h("a"), 10), put("d/y", h("b"), 5)], "v");
  const { dropped } = m.apply([put("x", h("c"), 7, 0o755, 2000)], "v");
  assert.deepEqual(m.get("x"), [h("c"), 7, 0o755, 2000]);
  assert.deepEqual(dropped, [h("a")], "the replaced content is named for collection");
  assert.equal(m.size, 2);
  assert.equal(m.bytes, 12);
});

test("a content still named elsewhere is not dropped", () => {
  const m = new Manifest();
  m.apply([put("a", h("a")), put("b", h("a"))], "v");
  assert.deepEqual(m.apply([del("a")], "v").dropped, []);
  assert.deepEqual(m.apply([del("b")], "v").dropped, [h("a")]);
});

test("mode keeps only permission bits (no setuid into a volume)", () => {
  const m = new Manifest();
  m.apply([put("s", h("a"), 1, 0o4755)], "v");
  assert.equal(m.get("s")![2], 0o755);
});

test("a directory replaces a file in its way, and a file replaces a directory with everything below", () => {
  const m = new Manifest();
  m.apply([put("a", h("1")), put("d/x", h("2")), put("d/e/y", h("3"))], "v");
  m.apply([put("a/b", h("4"))], "v");
  assert.equal(m.get("a"), undefined);
  assert.ok(m.isDir("a"));
  const { dropped } = m.apply([put("d", h("5"))], "v");
  assert.equal(m.get("d/x"), undefined);
  assert.equal(m.get("d/e/y"), undefined);
  assert.ok(!m.isDir("d/e"));
  assert.deepEqual(m.get("d")?.[0], h("5"));
  assert.deepEqual(dropped.sort(), [h("2"), h("3")]);
  assert.deepEqual(Object.keys(m.toJSON()).sort(), ["a/b", "d"]);
});

test("removals: a file; a directory only when recursive; a missing path is no error (another writer was first)", () => {
  const m = new Manifest();
  m.apply([put("d/x", h("1")), put("d/y", h("2")), put("z", h("3"))], "v");
  assert.equal(m.apply([del("d")], "v").changed, 0);
  assert.equal(m.size, 3);
  assert.equal(m.apply([del("d", true)], "v").changed, 2);
  assert.equal(m.apply([del("gone")], "v").changed, 0);
  assert.equal(m.apply([del("", true)], "v").changed, 1, "the root, recursively: everything");
  assert.equal(m.size, 0);
  assert.equal(m.bytes, 0);
});

test("bad paths are refused before anything changes", () => {
  const m = new Manifest();
  m.apply([put("keep", h("1"))], "v");
  for (const path of ["../x", "/abs", "a/../../b", ""]) {
    assert.throws(() => m.apply([put("fine", h("2")), put(path, h("3"))], "v"), (err: unknown) =>
      err instanceof Beta9Error && err.code === "VOLUME_PATH_INVALID", path);
  }
  assert.deepEqual(Object.keys(m.toJSON()), ["keep"]);
});

test("paths are stored canonical, so two spellings are one file", () => {
  const m = new Manifest();
  m.apply([put("a//b/./c", h("1")), put("a/b/c/", h("2"))], "v");
  assert.deepEqual(Object.keys(m.toJSON()), ["a/b/c"]);
});

test("too many files is QUOTA_EXCEEDED naming the volume", () => {
  const m = new Manifest();
  assert.throws(() => m.apply([put("a", h("1")), put("b", h("2")), put("c", h("3"))], "small", 2), (err: unknown) =>
    err instanceof Beta9Error && err.code === "QUOTA_EXCEEDED" && /files in volume small/.test(err.message));
});

test("listing: children with directory sizes, recursive files, a file itself, nothing for a missing path", () => {
  const m = Manifest.from({ "a.txt": [h("1"), 3, 0o644, 5], "d/x": [h("2"), 4, 0o600, 6], "d/e/y": [h("3"), 5, 0o644, 7] });
  assert.deepEqual(m.list(""), [
    { path: "a.txt", type: "file", size: 3, mode: 0o644, mtime: 5, sha256: h("1") },
    { path: "d", type: "dir", size: 9 },
  ]);
  assert.deepEqual(m.list("d")!.map((e) => [e.path, e.type, e.size]), [["d/e", "dir", 5], ["d/x", "file", 4]]);
  assert.deepEqual(m.list("d", true)!.map((e) => e.path), ["d/e/y", "d/x"]);
  assert.deepEqual(m.list("a.txt")!.map((e) => e.path), ["a.txt"]);
  assert.equal(m.list("nope"), undefined);
  assert.equal(m.list("d/e/y/z"), undefined);
});
