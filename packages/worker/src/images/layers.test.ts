import assert from "node:assert/strict";
import { lstat, mkdir, readFile, readdir, readlink, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { DigestMismatchError, sha256Digest } from "./digest.js";
import { LayerRefusedError, applyLayer, applyLayers } from "./layers.js";
import { TarFormatError } from "./tar-list.js";
import { zstdCompress } from "./testing-image.js";
import { makeTar, tempDir, type TarSpec } from "./testing.js";

let work: { path: string; cleanup: () => Promise<void> };
let n = 0;
before(async () => (work = await tempDir("layers")));
after(async () => work.cleanup());

async function writeLayer(entries: TarSpec[], compress: "gzip" | "zstd" | "none" = "none"): Promise<string> {
  const tar = makeTar(entries);
  const path = join(work.path, `layer-${++n}.${compress}`);
  await writeFile(path, compress === "gzip" ? gzipSync(tar) : compress === "zstd" ? zstdCompress(tar) : tar);
  return path;
}

/** A fresh rootfs and a sibling dir that must never be touched. */
async function scene(): Promise<{ root: string; outside: string }> {
  const base = join(work.path, `scene-${++n}`);
  await mkdir(join(base, "outside"), { recursive: true });
  await writeFile(join(base, "outside", "keep"), "precious");
  return { root: join(base, "rootfs"), outside: join(base, "outside") };
}

async function assertOutsideUntouched(outside: string): Promise<void> {
  assert.deepEqual((await readdir(outside)).sort(), ["keep"]);
  assert.equal(await readFile(join(outside, "keep"), "utf8"), "precious");
}

describe("applyLayers", () => {
  it("applies tar, gzip and zstd layers with whiteouts, modes, owners, links and type changes", async () => {
    const { root } = await scene();
    const l1 = await writeLayer([
      { name: "./", type: "dir" },
      { name: "bin/", type: "dir" },
      { name: "bin/run.sh", content: "#!/bin/sh\necho hi\n", mode: 0o755 },
      { name: "etc/", type: "dir" },
      { name: "etc/secret", content: "s3cret", mode: 0o600, uid: 1000, gid: 1000 },
      { name: "data/", type: "dir", mode: 0o750 },
      { name: "data/a.txt", content: "old" },
      { name: "data/hl", type: "hardlink", linkname: "data/a.txt" },
      { name: "link", type: "symlink", linkname: "data/a.txt" },
      { name: "gone/", type: "dir" },
      { name: "gone/x", content: "x" },
      { name: "opq/", type: "dir" },
      { name: "opq/a", content: "a" },
      { name: "opq/sub/", type: "dir" },
      { name: "del.txt", content: "bye" },
      { name: "usr/lib/", type: "dir" },
      { name: "lib", type: "symlink", linkname: "usr/lib" },
      { name: "dir2file/", type: "dir" },
      { name: "dir2file/child", content: "c" },
      { name: "abs", type: "symlink", linkname: "/etc/secret" },
    ], "gzip");
    const l2 = await writeLayer([
      { name: ".wh.del.txt" },
      { name: ".wh.gone" },
      { name: "opq/" , type: "dir" },
      { name: "opq/.wh..wh..opq" },
      { name: "opq/new.txt", content: "new" },
      { name: "data/a.txt", content: "new content" },
      { name: "dir2file", content: "now a file" },
      { name: "lib/libx.so", content: "elf" },
      { name: "abs/", type: "dir" },
      { name: "abs/inside", content: "in" },
    ], "zstd");
    const l3 = await writeLayer([{ name: "etc/added", content: "3" }, { name: "gone/", type: "dir" }]);
    const stats = await applyLayers(root, [{ path: l1 }, { path: l2, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" }, { path: l3 }]);
    assert.equal(stats.layers, 3);

    assert.equal((await stat(join(root, "bin/run.sh"))).mode & 0o777, 0o755);
    const secret = await stat(join(root, "etc/secret"));
    assert.equal(secret.mode & 0o777, 0o600);
    assert.equal(secret.uid, 1000);
    assert.equal((await stat(join(root, "data"))).mode & 0o777, 0o750);
    assert.equal(await readlink(join(root, "link")), "data/a.txt");
    assert.equal(await readFile(join(root, "link"), "utf8"), "new content");
    assert.equal(await readFile(join(root, "data/hl"), "utf8"), "old"); // the upper file replaced a.txt, not its inode
    await assert.rejects(lstat(join(root, "del.txt")), { code: "ENOENT" });
    assert.deepEqual(await readdir(join(root, "gone")), []); // whiteout deleted it; layer 3 made a new empty one
    assert.deepEqual(await readdir(join(root, "opq")), ["new.txt"]);
    assert.equal(await readFile(join(root, "dir2file"), "utf8"), "now a file");
    assert.equal(await readFile(join(root, "usr/lib/libx.so"), "utf8"), "elf"); // through a relative symlink
    assert.ok((await lstat(join(root, "abs"))).isDirectory()); // the lower absolute symlink was replaced, not followed
    assert.equal(await readFile(join(root, "abs/inside"), "utf8"), "in");
    assert.equal(await readFile(join(root, "etc/added"), "utf8"), "3");
    assert.ok(!(await readdir(root)).some((f) => f.startsWith(".wh.")));
  });

  it("checks the uncompressed digest against the config's diff_id", async () => {
    const { root } = await scene();
    const tar = makeTar([{ name: "f", content: "1" }]);
    const path = await writeLayer([{ name: "f", content: "1" }], "gzip");
    await applyLayer(root, { path, diffId: sha256Digest(tar) });
    await assert.rejects(applyLayer(root, { path, diffId: sha256Digest("other") }), DigestMismatchError);
  });

  it("refuses data that is not a tar", async () => {
    const { root } = await scene();
    const path = join(work.path, "garbage");
    await writeFile(path, Buffer.alloc(4096, 7));
    await mkdir(root, { recursive: true });
    await assert.rejects(applyLayer(root, { path }), TarFormatError);
  });
});

describe("hostile layers", () => {
  const cases: { name: string; layers: (outside: string) => TarSpec[][] }[] = [
    { name: "a ../ entry", layers: () => [[{ name: "../evil", content: "x" }]] },
    { name: "a ../ in the middle", layers: () => [[{ name: "a/../../evil", content: "x" }]] },
    { name: "an absolute path", layers: () => [[{ name: "/etc/evil", content: "x" }]] },
    { name: "a file through an absolute symlink", layers: (o) => [[{ name: "sym", type: "symlink", linkname: o }, { name: "sym/pwned", content: "x" }]] },
    { name: "a file through a symlink from a lower layer", layers: (o) => [[{ name: "sym", type: "symlink", linkname: o }], [{ name: "sym/pwned", content: "x" }]] },
    { name: "a file through a relative symlink that climbs out", layers: () => [[{ name: "d/", type: "dir" }, { name: "d/esc", type: "symlink", linkname: "../../.." }, { name: "d/esc/pwned", content: "x" }]] },
    { name: "a hard link out of the rootfs", layers: () => [[{ name: "h", type: "hardlink", linkname: "../outside/keep" }]] },
    { name: "a hard link through an absolute symlink", layers: (o) => [[{ name: "sym", type: "symlink", linkname: o }], [{ name: "h", type: "hardlink", linkname: "sym/keep" }]] },
    { name: "a whiteout through a symlink", layers: (o) => [[{ name: "sym", type: "symlink", linkname: o }], [{ name: "sym/.wh.keep" }]] },
    { name: "an opaque whiteout through a symlink", layers: (o) => [[{ name: "sym", type: "symlink", linkname: o }], [{ name: "sym/.wh..wh..opq" }]] },
    { name: "a symlink loop", layers: () => [[{ name: "a", type: "symlink", linkname: "b" }, { name: "b", type: "symlink", linkname: "a" }, { name: "a/x", content: "x" }]] },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const { root, outside } = await scene();
      const layers = [];
      for (const entries of c.layers(outside)) layers.push({ path: await writeLayer(entries) });
      await assert.rejects(applyLayers(root, layers), LayerRefusedError);
      await assertOutsideUntouched(outside);
    });
  }
});
