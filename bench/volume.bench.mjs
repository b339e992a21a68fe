// Volumes: `beta9 cp` up and down (MB/s) against curl PUT/GET of the same bytes to a plain loopback
// HTTP server (floor, same run, alternating rounds, medians); and the worker side of a mount: the
// first container of a worker to mount a volume (manifest, every content downloaded and checked,
// snapshot built, overlay mounted) against a second one on the same worker (the snapshot is
// reused: manifest check and overlay only); the first read on a new worker against a plain HTTP download
// from the gateway; a cached read through the overlay against the worker's local disk.
// BENCH_VOLUME_MIB sets the cp file size (default 256); BENCH_VOLUME_FIRST_READ_MIB the first-read
// file's (default 1024, the 1 GiB).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fmt, median, spawnServer, stop } from "./lib.mjs";

const run_ = promisify(execFile);
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const cli = here("../packages/cli/dist/main.js");
const MIB = Number(process.env.BENCH_VOLUME_MIB ?? 256);
const FIRST_READ_MIB = Number(process.env.BENCH_VOLUME_FIRST_READ_MIB ?? 1024);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// First reads swing with this VM's speed (curl alone 470–1,000 MB/s between runs): more rounds, the
// order alternating, and the ratio taken per round (curl and the worker back to back), then the median.
const MOUNT_ROUNDS = Math.max(ROUNDS, Number(process.env.BENCH_VOLUME_MOUNT_ROUNDS ?? 5));
const MB = 1e6;

async function makeFile(path, mib) {
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    if (!out.write(Buffer.alloc(1 << 20, createHash("sha512").update(`bench-${i}`).digest()))) await new Promise((r) => out.once("drain", r));
  }
  await new Promise((r) => out.end(r));
}

async function timed(fn) {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-volume-"));
  const children = [];
  try {
    const gw = await spawnServer(here("./servers/volume-gateway.mjs"), [join(dir, "data")]);
    children.push(gw.child);
    mkdirSync(join(dir, "floor"));
    const floor = await spawnServer(here("./servers/plain-files.mjs"), [join(dir, "floor")]);
    children.push(floor.child);
    const file = join(dir, "payload.bin");
    await makeFile(file, MIB);
    const bytes = statSync(file).size;
    const env = { ...process.env, BETA9_GATEWAY: gw.info.url, BETA9_TOKEN: gw.info.adminKey, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" };
    const beta9 = (...args) => run_(process.execPath, [cli, ...args], { env, maxBuffer: 1 << 24 });
    await beta9("volume", "create", "bench");
    const cliStart = median(await Promise.all([0, 1, 2].map(() => timed(() => beta9("--version")))));

    const rounds = { curlUp: [], curlDown: [], cpUp: [], cpDown: [] };
    for (let i = 0; i < ROUNDS; i++) {
      rounds.curlUp.push(await timed(() => run_("curl", ["-sSf", "-T", file, `${floor.info.url}/f`, "-o", "/dev/null"])));
      rounds.curlDown.push(await timed(() => run_("curl", ["-sSf", `${floor.info.url}/f`, "-o", join(dir, "curl.back")])));
      // Each round a new path, and the previous content removed, so that no chunk is stored already.
      await beta9("rm", "-r", "bench:").catch(() => {});
      rounds.cpUp.push(await timed(() => beta9("cp", file, `bench:r${i}.bin`)));
      rounds.cpDown.push(await timed(() => beta9("cp", `bench:r${i}.bin`, join(dir, `cp-${i}.back`))));
      rmSync(join(dir, `cp-${i}.back`), { force: true });
    }
    const rate = (xs) => bytes / MB / median(xs);
    // Also without the CLI's start-up (a node process loading the SDK), which a larger file amortises.
    const net = (xs) => bytes / MB / Math.max(0.001, median(xs) - cliStart);
    const up = { curl: rate(rounds.curlUp), cp: rate(rounds.cpUp), cpLessStartUp: net(rounds.cpUp) };
    const down = { curl: rate(rounds.curlDown), cp: rate(rounds.cpDown), cpLessStartUp: net(rounds.cpDown) };

    // Worker side of a mount: what the worker does before a container starts (cache.ts + the overlay),
    // on a new cache dir each round (a new worker). "first" also reads the file through the overlay,
    // so it is the "first read on a new worker", set against a plain HTTP download of the same
    // file from the gateway (curl GET of /volume/bench/file, to disk as the worker writes it). Then,
    // cached, a read through the overlay the container is given vs a read of a copy on the worker's
    // local disk (both warm: page cache; dd with 1 MiB blocks for both).
    const { VolumeCache } = await import("../packages/worker/dist/volumes/cache.js");
    const { mountOverlay, unmount } = await import("../packages/worker/dist/runtime/runc/overlay.js");
    const endpoint = { url: gw.info.url, token: gw.info.workerToken };
    // The volume now holds one file: the first-read file, made and copied in.
    const last = "first-read.bin";
    await beta9("rm", "-r", "bench:");
    const firstFile = join(dir, last);
    await makeFile(firstFile, FIRST_READ_MIB);
    await beta9("cp", firstFile, `bench:${last}`);
    const firstBytes = statSync(firstFile).size;
    rmSync(firstFile);
    const dd = (path) => run_("dd", [`if=${path}`, "of=/dev/null", "bs=1M"]);
    const mounts = { first: [], second: [], httpDownload: [], cachedRead: [], localRead: [], acquire: [] };
    const localCopy = join(dir, "local-copy.bin");
    await makeFile(localCopy, FIRST_READ_MIB);
    await dd(localCopy);
    const httpDownload = async () => {
      mounts.httpDownload.push(await timed(() => run_("curl", ["-sSf", "-H", `Authorization: Bearer ${gw.info.adminKey}`,
        `${gw.info.url}/api/v1/volume/bench/file?path=${last}`, "-o", join(dir, "http.back")])));
      rmSync(join(dir, "http.back"), { force: true });
    };
    for (let i = 0; i < MOUNT_ROUNDS; i++) {
      if (i % 2 === 0) await httpDownload();
      const cache = new VolumeCache(join(dir, `worker-${i}`, "volumes"), endpoint);
      await cache.init();
      for (const which of ["first", "second"]) {
        const c = join(dir, `worker-${i}`, which);
        let snap;
        mounts[which].push(await timed(async () => {
          const t0 = performance.now();
          snap = await cache.acquire(gw.info.workspaceId, "bench");
          if (which === "first") mounts.acquire.push((performance.now() - t0) / 1000);
          await mountOverlay([snap.dir], { upper: join(c, "upper"), work: join(c, "work"), rootfs: join(c, "merged") });
          if (which === "first") await dd(join(c, "merged", last));
        }));
        if (which === "second") {
          // Three reads each (one of 1 GiB from the page cache takes some 60 ms: too short to time alone).
          const thrice = async (path) => { for (let k = 0; k < 3; k++) await dd(path); };
          mounts.cachedRead.push(await timed(() => thrice(join(c, "merged", last))) / 3);
          mounts.localRead.push(await timed(() => thrice(localCopy)) / 3);
        }
        await unmount(join(c, "merged"));
        await cache.release(snap);
      }
      rmSync(join(dir, `worker-${i}`), { recursive: true, force: true });
      if (i % 2 === 1) await httpDownload();
    }
    const mount = { first: median(mounts.first), second: median(mounts.second), firstAcquire: median(mounts.acquire) };
    const pairs = mounts.first.map((s, i) => mounts.httpDownload[i] / s);
    const firstRead = { MiB: FIRST_READ_MIB, httpMBps: firstBytes / MB / median(mounts.httpDownload), workerMBps: firstBytes / MB / mount.first, pairs };
    const cachedRead = { localMBps: firstBytes / MB / median(mounts.localRead), overlayMBps: firstBytes / MB / median(mounts.cachedRead) };
    return {
      name: `volumes: beta9 cp of ${MIB} MiB vs curl to a plain loopback server; second mount on a worker vs the first`,
      fileMiB: MIB,
      upMBps: up, downMBps: down,
      ratio: {
        up: up.cp / up.curl, down: down.cp / down.curl, secondMountVsFirst: mount.second / mount.first,
        firstReadVsHttp: median(pairs), cachedReadVsLocalDisk: cachedRead.overlayMBps / cachedRead.localMBps,
      },
      firstRead, cachedRead,
      cliStartS: cliStart,
      mountS: mount,
      print() {
        console.log(`\n## ${this.name}  (${ROUNDS} alternating rounds, medians)`);
        console.log(`  up    curl -T ${fmt(up.curl).padStart(6)} MB/s   beta9 cp ${fmt(up.cp).padStart(6)} MB/s   ratio ${fmt(this.ratio.up, 2)}`);
        console.log(`  down  curl -o ${fmt(down.curl).padStart(6)} MB/s   beta9 cp ${fmt(down.cp).padStart(6)} MB/s   ratio ${fmt(this.ratio.down, 2)}`);
        console.log(`  beta9 cp times include the CLI's start-up (beta9 --version: ${fmt(cliStart, 2)} s here); less that: up ${fmt(up.cpLessStartUp)} MB/s (${fmt(up.cpLessStartUp / up.curl, 2)}), down ${fmt(down.cpLessStartUp)} MB/s (${fmt(down.cpLessStartUp / down.curl, 2)})`);
        console.log(`  mount on a worker: first ${fmt(mount.first * 1000)} ms (downloads ${FIRST_READ_MIB} MiB: ${fmt(mount.firstAcquire * 1000)} ms; then mounts and reads it through the overlay), second ${fmt(mount.second * 1000)} ms (snapshot reused): ratio ${fmt(this.ratio.secondMountVsFirst, 3)}`);
        console.log(`  first read of ${FIRST_READ_MIB} MiB on a new worker ${fmt(firstRead.workerMBps).padStart(6)} MB/s   curl GET from the gateway ${fmt(firstRead.httpMBps).padStart(6)} MB/s   ratio ${fmt(this.ratio.firstReadVsHttp, 2)} ` +
          `(median of ${pairs.length} back-to-back pairs, ${fmt(Math.min(...pairs), 2)}–${fmt(Math.max(...pairs), 2)}; goal >= 0.8)`);
        console.log(`  cached read through the overlay ${fmt(cachedRead.overlayMBps).padStart(6)} MB/s   worker's local disk ${fmt(cachedRead.localMBps).padStart(6)} MB/s   ratio ${fmt(this.ratio.cachedReadVsLocalDisk, 2)} (goal >= 0.8)`);
      },
    };
  } finally {
    for (const child of children) await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}
