/**
 * Builds the small OCI image the registry tests push and pull: a gzip layer (files with modes and
 * owners, a symlink, a hard link, plus some bulk data for throughput figures), a zstd layer
 * (whiteout, opaque dir, replaced file) and a plain tar layer.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { sha256Digest } from "./digest.js";
import { MediaType } from "./oci.js";
import type { PushImage } from "./registry.js";
import { makeTar, type TarSpec } from "./testing.js";

export function zstdCompress(data: Buffer): Buffer {
  const out = spawnSync("zstd", ["-q", "-c", "-3", "-T0"], { input: data, maxBuffer: 1 << 30 });
  if (out.status !== 0) throw new Error(`zstd failed: ${out.stderr.toString()}`);
  return out.stdout;
}

/** Deterministic bytes that compress about 2:1, like binaries do (a hash chain, half repeated). */
function bulk(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update(seed).digest();
  for (let off = 0; off < size; off += 64) {
    block = createHash("sha256").update(block).digest();
    block.copy(out, off);
    block.copy(out, off + 32);
  }
  return out;
}

export interface TestImage extends PushImage {
  diffIds: string[];
  uncompressedBytes: number;
}

/** `tag` goes into a file, so images built with different tags share no blobs. */
export async function buildTestImage(dir: string, tag: string, bulkBytes = 0): Promise<TestImage> {
  const bulkFiles: TarSpec[] = [];
  for (let i = 0; bulkBytes > 0 && i < 16; i++) bulkFiles.push({ name: `bulk/f${i}.bin`, content: bulk(`${tag}-${i}`, Math.floor(bulkBytes / 16)) });
  const layers: { entries: TarSpec[]; compress: "gzip" | "zstd" | "none"; mediaType: string }[] = [
    {
      compress: "gzip",
      mediaType: MediaType.ociLayerGzip,
      entries: [
        { name: "bin/", type: "dir" },
        { name: "bin/hello", content: "#!/bin/sh\necho hello\n", mode: 0o755 },
        { name: "etc/", type: "dir" },
        { name: "etc/tag", content: tag },
        { name: "etc/shadow", content: "root:*:", mode: 0o640, gid: 42 },
        { name: "etc/old.conf", content: "old" },
        { name: "cache/", type: "dir" },
        { name: "cache/a", content: "a" },
        { name: "cache/b", content: "b" },
        { name: "hello-link", type: "symlink", linkname: "bin/hello" },
        { name: "bin/hello-hard", type: "hardlink", linkname: "bin/hello" },
        ...(bulkFiles.length ? [{ name: "bulk/", type: "dir" as const }, ...bulkFiles] : []),
      ],
    },
    {
      compress: "zstd",
      mediaType: MediaType.ociLayerZstd,
      entries: [
        { name: "etc/.wh.old.conf" },
        { name: "cache/", type: "dir" },
        { name: "cache/.wh..wh..opq" },
        { name: "cache/c", content: "c" },
        { name: "etc/tag", content: `${tag}-v2` },
      ],
    },
    { compress: "none", mediaType: MediaType.ociLayerTar, entries: [{ name: "app/", type: "dir" }, { name: "app/main.py", content: "print('hi')\n" }] },
  ];
  const out: TestImage = { config: Buffer.alloc(0), layers: [], diffIds: [], uncompressedBytes: 0 };
  for (const [i, layer] of layers.entries()) {
    const tar = makeTar(layer.entries);
    const blob = layer.compress === "gzip" ? gzipSync(tar, { level: 1 }) : layer.compress === "zstd" ? zstdCompress(tar) : tar;
    const path = join(dir, `${tag}-layer${i}`);
    await writeFile(path, blob);
    out.layers.push({ path, mediaType: layer.mediaType });
    out.diffIds.push(sha256Digest(tar));
    out.uncompressedBytes += tar.length;
  }
  out.config = Buffer.from(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/bin"], Cmd: ["/bin/hello"] },
    rootfs: { type: "layers", diff_ids: out.diffIds },
  }));
  return out;
}
