/**
 * Measures the image pipeline on this machine: the default base image (debootstrap + python3) as a
 * one-layer OCI image, pushed to a local docker-registry, then pull, apply, pack and mount.
 * Run: node packages/worker/dist/images/bench-images.js [cacheDir]   (root; ~40 s on first run)
 */
import { join } from "node:path";
import { ensureBaseImage } from "./base.js";
import { sha256File } from "./digest.js";
import { run } from "../exec.js";
import { applyLayers } from "./layers.js";
import { MediaType } from "./oci.js";
import { mountPacked, packRootfs, unmountPacked } from "./pack.js";
import { RegistryClient } from "./registry.js";
import { startRegistry, tempDir } from "./testing.js";

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);
const time = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
};

async function main(): Promise<void> {
  const work = await tempDir("bench");
  const registry = await startRegistry();
  const client = new RegistryClient({ allowPrivate: true });
  try {
    const cacheDir = process.argv[2] ?? join(work.path, "base-cache");
    const [base, buildMs] = await time(() => ensureBaseImage({ cacheDir }));
    console.log(`base image: ${base.cached ? "cached" : `built in ${(buildMs / 1000).toFixed(1)} s`} at ${base.rootfs}`);
    const plain = join(work.path, "base.tar");
    await run("tar", ["--numeric-owner", "--xattrs", "--sort=name", "-cf", plain, "-C", base.rootfs, "."]);
    const uncompressed = Number((await run("stat", ["-c", "%s", plain])).trim());
    const diffId = await sha256File(plain);
    for (const [kind, argv, mediaType] of [
      ["zstd-3", ["zstd", "-q", "-3", "-T0", plain, "-o", `${plain}.zst`], MediaType.ociLayerZstd],
      ["gzip-6", ["sh", "-c", `gzip -6 -c ${plain} > ${plain}.gz`], MediaType.ociLayerGzip],
    ] as const) {
      const [, compressMs] = await time(() => run(argv[0], argv.slice(1)));
      const layerPath = kind === "zstd-3" ? `${plain}.zst` : `${plain}.gz`;
      const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diffId] } }));
      await client.push(`${registry.host}/bench/base:${kind}`, { config, layers: [{ path: layerPath, mediaType }] });
      const [pulled, pullMs] = await time(() => client.pull(`${registry.host}/bench/base:${kind}`, join(work.path, `blobs-${kind}`)));
      const root = join(work.path, `rootfs-${kind}`);
      const [stats, applyMs] = await time(() => applyLayers(root, pulled.layers));
      const [packed, packMs] = await time(() => packRootfs(root, join(work.path, `${kind}.sqfs`)));
      const [mountPoint, mountMs] = await time(() => mountPacked(packed.path, join(work.path, `mnt-${kind}`)));
      await unmountPacked(mountPoint);
      const total = pullMs + applyMs;
      console.log(
        `${kind}: layer ${mb(stats.compressedBytes)} MB (compress ${compressMs.toFixed(0)} ms), ${mb(uncompressed)} MB uncompressed; ` +
          `pull ${pullMs.toFixed(0)} ms, apply ${applyMs.toFixed(0)} ms → pull+apply ${mb((uncompressed / total) * 1000)} MB/s uncompressed; ` +
          `squashfs pack ${packMs.toFixed(0)} ms → ${mb(packed.bytes)} MB, mount ${mountMs.toFixed(0)} ms`,
      );
    }
  } finally {
    await client.close();
    await registry.stop();
    await work.cleanup();
  }
}

await main();
