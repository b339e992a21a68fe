// Image distribution: a registry image (≈64 MiB of layer data) is built into a packed squashfs
// image once, then a worker with an empty cache fetches it from the gateway, verifies its sha256
// and mounts it (what the first container on a fresh worker pays). Median MiB/s over rounds; a
// local `cp` of the same (page-cached) file is printed beside it as the machine's ceiling.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { request } from "undici";
import { startGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { buildTestImage, ImageCache, fetchImage, RegistryClient, startRegistry } from "@beta9/worker/testing";
import { fmt, median } from "./lib.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "image fetch", skipped: unavailable, print() { console.log(`\n## image fetch: skipped (${unavailable})`); } };
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-img-"));
  const registry = await startRegistry();
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
  const token = await gateway.localWorkerToken();
  const worker = await startWorker({ gatewayUrl: gateway.url, token, stateDir: join(dir, "worker"), logger: pino({ level: "warn" }), runtime: "runc", name: "benchi", subnet: "10.219.252.0/24", workerId: "benchi", allowPrivateRegistries: true });
  const auth = { authorization: `Bearer ${gateway.bootstrap.token.key}`, "content-type": "application/json" };
  try {
    await worker.connected;
    const image = await buildTestImage(dir, "bench", 64 * 1024 * 1024);
    const ref = `${registry.host}/bench/big:v1`;
    const client = new RegistryClient({ allowPrivate: true }); // the bench's registry is on loopback
    await client.push(ref, image);
    await client.close();
    const buildStart = performance.now();
    let info = await (await request(`${gateway.url}/api/v1/image/build`, { method: "POST", headers: auth, body: JSON.stringify({ spec: { base: { kind: "registry", ref }, steps: [], env: {} } }) })).body.json();
    while (info.status === "building") {
      await new Promise((r) => setTimeout(r, 50));
      info = await (await request(`${gateway.url}/api/v1/image/${info.id}`, { headers: auth })).body.json();
    }
    if (info.status !== "ready") throw new Error(`build failed: ${info.error}`);
    const buildMs = performance.now() - buildStart;
    const fetchTimes = [];
    const copyTimes = [];
    const blob = join(dir, "gw", "images", `${info.id}.sqfs`);
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      execFileSync("cp", [blob, join(dir, `copy-${i}`)]);
      copyTimes.push(performance.now() - t0);
      rmSync(join(dir, `copy-${i}`));
      const cache = new ImageCache({ dir: join(dir, `cache-${i}`), maxBytes: 1024 ** 3, fetch: (id, dest) => fetchImage({ url: gateway.url, token }, id, dest) });
      const t1 = performance.now();
      const lease = await cache.acquire(info.id);
      fetchTimes.push(performance.now() - t1);
      await lease.release();
      await cache.close();
    }
    const bytes = statSync(blob).size;
    const mbps = (ms) => bytes / 1_048_576 / (ms / 1000);
    const f = median(fetchTimes);
    const c = median(copyTimes);
    return {
      name: "image fetch + verify + mount on an empty worker cache",
      packedBytes: bytes, layerBytes: image.uncompressedBytes, buildMs, fetchMs: f, copyMs: c, fetchMBps: mbps(f), copyMBps: mbps(c),
      print() {
        console.log(`\n## ${this.name}  (${ROUNDS} rounds, medians)`);
        console.log(`  build from registry (pull, apply, pack, upload): ${fmt(buildMs)} ms for ${fmt(image.uncompressedBytes / 1_048_576, 1)} MiB of layers → ${fmt(bytes / 1_048_576, 1)} MiB packed`);
        console.log(`  fetch + sha256 + mount   ${fmt(f, 1).padStart(7)} ms   ${fmt(mbps(f), 0)} MiB/s`);
        console.log(`  (ceiling: local cp of the cached file ${fmt(c, 1)} ms, ${fmt(mbps(c), 0)} MiB/s)`);
      },
    };
  } finally {
    await worker.close(1000);
    await gateway.close();
    await registry.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
