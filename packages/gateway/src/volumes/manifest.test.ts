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
    err instanceof Beta9Error && err.code === "QUOTA_EXCEEDED" && /in volume small/.test(err.message));
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

const link = (path: string, target: string): VolumeChange => ({ path, link: target, mtime: 9 });
const dir = (path: string, mode = 0o755): VolumeChange => ({ path, dir: true, mode, mtime: 9 });

test("symlinks are stored as their text (outside targets too), listed as links, replaced like files", () => {
  const m = new Manifest();
  m.apply([link("etc", "/etc"), link("up", "../../../../root"), put("f", h("1"))], "v");
  assert.deepEqual(m.get("etc"), ["", 0, 0o777, 9, { link: "/etc" }]);
  assert.equal(m.file("etc"), undefined, "a link is no file: nothing reads a blob for it");
  assert.deepEqual(m.list("up"), [{ path: "up", type: "link", size: 0, mtime: 9, target: "../../../../root" }]);
  assert.equal(m.bytes, 1, "links hold no bytes");
  assert.deepEqual([...m.hashes()], [h("1")]);
  // A path below a link replaces the link with a directory: nothing is ever resolved through it.
  m.apply([put("etc/passwd", h("2"))], "v");
  assert.equal(m.get("etc"), undefined);
  assert.ok(m.isDir("etc"));
  m.apply([link("f", "elsewhere")], "v");
  assert.equal(m.references(h("1")), false, "the file a link replaced lets its content go");
  assert.throws(() => m.apply([link("x", "a\0b")], "v"), (err: unknown) => err instanceof Beta9Error && err.code === "VOLUME_PATH_INVALID");
});

test("directory entries: empty ones are kept and listed, rmdir only when empty, recursive removal takes them", () => {
  const m = new Manifest();
  m.apply([dir("empty", 0o700), dir("d"), put("d/x", h("1"))], "v");
  assert.deepEqual(m.list(""), [
    { path: "d", type: "dir", size: 1, mode: 0o755, mtime: 9 },
    { path: "empty", type: "dir", size: 0, mode: 0o700, mtime: 9 },
  ]);
  assert.deepEqual(m.list("empty"), []);
  assert.deepEqual(m.list("", true)!.map((e) => [e.path, e.type]), [["d/x", "file"], ["empty", "dir"]], "recursive: files, links and empty directories");
  m.apply([{ path: "d", delete: true }], "v");
  assert.ok(m.get("d"), "a directory with entries below stays on a removal without recursive (rmdir)");
  m.apply([{ path: "d/x", delete: true }, { path: "d", delete: true }, { path: "empty", delete: true }], "v");
  assert.equal(m.size, 0);
  m.apply([dir("a"), put("a/b/c", h("2")), dir("a/b")], "v");
  assert.deepEqual(m.list("a", true)!.map((e) => e.path), ["a/b/c"], "a directory entry keeps what is below it");
  m.apply([put("a", h("3"))], "v");
  assert.equal(m.size, 1, "a file replaces a directory entry with everything below");
  m.apply([dir("a")], "v");
  assert.deepEqual(m.get("a"), ["", 0, 0o755, 9, "dir"], "and a directory entry replaces a file");
  assert.equal(m.references(h("3")), false);
});
