/** Volume names and paths: every spelling that could leave a volume is refused, not resolved. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { changeEntry, linkTargetProblem, parseVolumeSpec, sameEntry, volumeNameProblem, volumePath, VolumePathError, type ManifestEntry } from "./volumes.js";

test("paths are made canonical: duplicate slashes, '.' segments and a trailing slash go", () => {
  assert.equal(volumePath("a//b/./c/"), "a/b/c");
  assert.equal(volumePath("./model.bin"), "model.bin");
  assert.equal(volumePath("dir with spaces/ünï.txt"), "dir with spaces/ünï.txt");
  assert.equal(volumePath("a..b/..c"), "a..b/..c", "dots inside a name are only a name");
});

test("the root is a path only where it is allowed (ls, rm -r)", () => {
  assert.equal(volumePath("", true), "");
  assert.equal(volumePath(".", true), "");
  assert.equal(volumePath("./", true), "");
  assert.throws(() => volumePath(""), /names the volume's root/);
  assert.throws(() => volumePath("."), VolumePathError);
});

test("absolute paths, '..' anywhere and control characters are refused with the reason", () => {
  for (const [raw, reason] of [
    ["/etc/passwd", /is absolute; paths are relative to the volume's root \(etc\/passwd\)/],
    ["/", /is absolute/],
    ["..", /contains '\.\.'/],
    ["../x", /contains '\.\.'/],
    ["a/../../x", /contains '\.\.'/],
    ["a/..", /contains '\.\.'/],
    ["a\u0000b", /control character/],
    ["a\nb", /control character/],
  ] as const) {
    assert.throws(() => volumePath(raw, true), (err: unknown) => err instanceof VolumePathError && reason.test(err.message), raw);
  }
});

test("over-long paths and names are refused", () => {
  assert.throws(() => volumePath(`${"a/".repeat(600)}x`), /longer than 1024 bytes/);
  assert.throws(() => volumePath("x".repeat(256)), /name longer than 255 bytes/);
  assert.equal(volumePath("x".repeat(255)), "x".repeat(255));
});

test("volume names: one lowercase name; a '/' is named as the problem", () => {
  assert.equal(volumeNameProblem("models-v2"), undefined);
  assert.match(volumeNameProblem("a/b")!, /'\/' is not allowed/);
  assert.match(volumeNameProblem("Data")!, /lowercase letters/);
  assert.match(volumeNameProblem("..")!, /not valid/);
});

test("VOLUME:PATH specs: the volume comes first and has no '/'; local paths are not specs", () => {
  assert.deepEqual(parseVolumeSpec("data:models/a.bin"), { volume: "data", path: "models/a.bin" });
  assert.deepEqual(parseVolumeSpec("data:"), { volume: "data", path: "" });
  assert.equal(parseVolumeSpec("./data:x"), undefined);
  assert.equal(parseVolumeSpec("/tmp/a:b"), undefined);
  assert.equal(parseVolumeSpec("plain.txt"), undefined);
  assert.equal(parseVolumeSpec(":x"), undefined);
});

test("symlink targets: any path (they are never followed), but not empty, NUL or over 4095 bytes; entries compare by content", () => {
  for (const ok of ["/etc/shadow", "../../../../root", "x", "a".repeat(4095)]) assert.equal(linkTargetProblem(ok), undefined, ok);
  for (const bad of ["", "a\0b", "a".repeat(4096), 5]) assert.ok(linkTargetProblem(bad), String(bad).slice(0, 10));
  assert.deepEqual(changeEntry({ path: "l", link: "/etc", mtime: 3 }), ["", 0, 0o777, 3, { link: "/etc" }]);
  assert.deepEqual(changeEntry({ path: "d", dir: true, mode: 0o4755, mtime: 3 }), ["", 0, 0o755, 3, "dir"], "permission bits only");
  const file: ManifestEntry = ["a".repeat(64), 1, 0o644, 1];
  assert.ok(sameEntry(file, ["a".repeat(64), 1, 0o644, 99]), "mtimes aside");
  assert.ok(!sameEntry(["", 0, 0o777, 1, { link: "x" }], ["", 0, 0o777, 1, { link: "y" }]));
  assert.ok(!sameEntry(["", 0, 0o755, 1, "dir"], ["", 0, 0o777, 1, { link: "x" }]));
  assert.ok(!sameEntry(["", 0, 0o755, 1, "dir"], ["", 0, 0o700, 1, "dir"]));
});
