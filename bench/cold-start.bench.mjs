// Cold start: from the gateway accepting a container request (POST /api/v1/container) to the
// runner's HTTP server inside the container answering its first request, on a local runc worker
// with the image (the worker's host rootfs + the runner bundle) already on disk, against a bare
// `runc run -d` of the same rootfs, mounts and server in a fresh netns on a bridge (the floor),
// alternating in one run; and the same worker code with user namespaces and the per-container disk
// off (what they cost a start).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { request } from "undici";
import { startGateway } from "@beta9/gateway";
import { ensureHostRootfs, ensureRunnerBundle, runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, load, median, prepareFloorHost } from "./lib.mjs";

// Each round starts one floor container and one container on each worker, back to back. The
// isolation cost is the median of the rounds' with/without ratios (order alternating), for the same
// reason as the warm pairs below.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 16);
// Warm A/B: rounds of this many seconds of load on a running container of each worker. The ratio is the median of each round's pair (with / without, measured back to back, order
// alternating): this VM's throughput drifts by ±20% over tens of seconds, which a ratio of two
// medians taken over the whole run would carry.
const WARM = { rounds: Number(process.env.BENCH_WARM_ROUNDS ?? 8), seconds: 2, connections: 10 };
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const quiet = (cmd, args) => { try { sh(cmd, args); } catch { /* cleanup of what may not exist */ } };

async function firstOk(url, deadlineMs = 10_000) {
  const end = performance.now() + deadlineMs;
  for (;;) {
    try {
      const res = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch { /* not up yet */ }
    if (performance.now() > end) throw new Error(`${url} did not answer within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** The floor: the same rootfs, mounts, command and config shape, started by hand. */
function makeFloor(dir, rootfs, runnerDir) {
  const bridge = "b9benchbr0";
  const { runcRoot, template } = prepareFloorHost(dir, bridge, "10.219.250.1/24");
  let n = 0;
  return {
    async start() {
      n += 1;
      const id = `b9bench-${n}`;
      const ns = `b9bench-${n}`;
      const ip = `10.219.250.${10 + n}`;
      const b = join(dir, id);
      mkdirSync(join(b, "upper"), { recursive: true }); mkdirSync(join(b, "work")); mkdirSync(join(b, "rootfs"));
      const t0 = performance.now();
      // The fastest wiring measured here: netns add + one batch on each side.
      sh("ip", ["netns", "add", ns]);
      execFileSync("ip", ["-batch", "-"], { input: `link add b9bv${n} type veth peer name eth0 netns ${ns}\nlink set b9bv${n} master ${bridge} up\n` });
      execFileSync("ip", ["-n", ns, "-batch", "-"], { input: `addr add ${ip}/24 dev eth0\nlink set eth0 up\nlink set lo up\n` });
      sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${join(b, "upper")},workdir=${join(b, "work")}`, join(b, "rootfs")]);
      const config = structuredClone(template);
      config.process.terminal = false;
      config.process.args = ["/beta9/lib/ld-linux-x86-64.so.2", "--library-path", "/beta9/lib", "/beta9/bin/node", "/beta9/runner/main.js"];
      config.process.env = ["PATH=/usr/bin:/bin", "PORT=8000"];
      config.root = { path: "rootfs", readonly: false };
      config.mounts.push({ destination: "/usr", type: "bind", source: "/usr", options: ["rbind", "ro", "nosuid", "nodev"] });
      config.mounts.push({ destination: "/beta9", type: "bind", source: runnerDir, options: ["rbind", "ro", "nosuid", "nodev"] });
      config.linux.namespaces = config.linux.namespaces.map((x) => (x.type === "network" ? { type: "network", path: `/var/run/netns/${ns}` } : x));
      config.linux.cgroupsPath = `/b9bench/${id}`;
      config.linux.resources = { ...config.linux.resources, memory: { limit: 512 * 1024 * 1024 }, cpu: { period: 100000, quota: 100000 } };
      writeFileSync(join(b, "config.json"), JSON.stringify(config));
      // The container inherits runc's stdio: with pipes, this call would wait for the container to exit.
      execFileSync("runc", ["--root", runcRoot, "run", "-d", "--bundle", b, id], { stdio: "ignore" });
      await firstOk(`http://${ip}:8000/health`);
      const ms = performance.now() - t0;
      return {
        ms,
        stop() {
          quiet("runc", ["--root", runcRoot, "delete", "-f", id]);
          quiet("umount", [join(b, "rootfs")]);
          quiet("ip", ["link", "del", `b9bv${n}`]);
          quiet("ip", ["netns", "del", ns]);
          quiet("rmdir", [`/sys/fs/cgroup/memory/b9bench/${id}`]);
          rmSync(b, { recursive: true, force: true });
        },
      };
    },
    close() {
      quiet("ip", ["link", "del", bridge]);
      for (const hierarchy of ["memory", "cpu", "cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd", "unified"]) {
        quiet("rmdir", [`/sys/fs/cgroup/${hierarchy}/b9bench`]);
      }
    },
  };
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "cold start", skipped: unavailable, print() { console.log(`\n## cold start: skipped (${unavailable})`); } };
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-cold-"));
  const logger = pino({ level: "warn" });
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
  const key = gateway.bootstrap.token.key;
  const workerToken = await gateway.localWorkerToken();
  // Two workers of this code: the defaults (user namespace, own writable-layer disk), and one with
  // both off, the container path before they came (the regression they cost, in the same run).
  const pools = { subject: "cold-default", plain: "cold-plain" };
  for (const name of Object.values(pools)) {
    await request(`${gateway.url}/api/v1/pool`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ name }) }).then((r) => r.body.dump());
  }
  const worker = await startWorker({ gatewayUrl: gateway.url, token: workerToken, stateDir: join(dir, "worker"), logger, runtime: "runc", name: "bench", subnet: "10.219.251.0/24", workerId: "bench", pool: pools.subject });
  const plainWorker = await startWorker({
    gatewayUrl: gateway.url, token: workerToken, stateDir: join(dir, "worker-plain"), logger, runtime: "runc", name: "benchp", subnet: "10.219.252.0/24", workerId: "bench-plain",
    pool: pools.plain, userns: false, writableLayerMiB: 0,
  });
  await Promise.all([worker.connected, plainWorker.connected]);
  const rootfs = ensureHostRootfs(join(dir, "worker"));
  const runner = ensureRunnerBundle(join(dir, "worker"));
  mkdirSync(join(dir, "floor"));
  let floor;
  const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const api = async (method, path, body) => {
    const res = await request(`${gateway.url}${path}`, { method, headers: auth, ...(body && { body: JSON.stringify(body) }) });
    return res.body.json();
  };
  const subjectStart = async (pool = pools.subject) => {
    const t0 = performance.now();
    const created = await api("POST", "/api/v1/container", {
      command: [...runner.nodeArgv, runner.runnerPath], ports: [8000], cpu: 1, memory: "512Mi", pool,
    });
    let c = created;
    while (!c.ports?.["8000"]) {
      if (c.state === "EXITED") throw new Error(`container exited: ${c.message}`);
      await new Promise((r) => setTimeout(r, 1));
      c = await api("GET", `/api/v1/container/${created.id}`);
    }
    await firstOk(`http://${c.ports["8000"].host}:${c.ports["8000"].port}/health`);
    const ms = performance.now() - t0;
    // stop() returns once the container is gone: a teardown still running would slow whichever
    // start comes next (the floor's stop is synchronous too).
    const stop = async () => {
      await api("POST", `/api/v1/container/${created.id}/stop`);
      const end = performance.now() + 30_000;
      for (let c = await api("GET", `/api/v1/container/${created.id}`); c.state !== "EXITED"; c = await api("GET", `/api/v1/container/${created.id}`)) {
        if (!c.state || performance.now() > end) throw new Error(`container ${created.id} not gone 30 s after its stop: ${JSON.stringify(c)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    return { ms, url: `http://${c.ports["8000"].host}:${c.ports["8000"].port}/health`, stop };
  };
  const times = { floor: [], subject: [], plain: [] };
  const warm = { subject: [], plain: [] };
  try {
    floor = makeFloor(join(dir, "floor"), rootfs, runner.dir);
    // One warm-up each (page cache, JIT), then alternate.
    for (const s of [await floor.start(), await subjectStart(), await subjectStart(pools.plain)]) await s.stop();
    for (let i = 0; i < ROUNDS; i++) {
      const f = await floor.start();
      times.floor.push(f.ms);
      f.stop();
      // Which of the two goes first alternates too.
      for (const which of i % 2 ? ["plain", "subject"] : ["subject", "plain"]) {
        const s = await subjectStart(pools[which]);
        times[which].push(s.ms);
        await s.stop();
      }
    }
    // Warm: requests a second to a running container of each worker (its runner's /health, straight
    // to the container's address: the path user namespaces and the disk could slow), alternating.
    const running = { subject: await subjectStart(), plain: await subjectStart(pools.plain) };
    try {
      for (let i = 0; i < WARM.rounds; i++) {
        for (const which of i % 2 ? ["plain", "subject"] : ["subject", "plain"]) {
          warm[which].push((await load({ url: running[which].url, connections: WARM.connections, duration: WARM.seconds })).rps);
        }
      }
    } finally {
      await Promise.all(Object.values(running).map((r) => r.stop()));
    }
  } finally {
    floor?.close();
    await plainWorker.close(2000);
    await worker.close(2000);
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const f = median(times.floor);
  const s = median(times.subject);
  const p = median(times.plain);
  return {
    name: "cold start: POST /api/v1/container → first HTTP 200 from the runner, vs bare runc run",
    rounds: ROUNDS, floorMs: f, subjectMs: s, plainMs: p, ratio: s / f, goal: "<= 1.5",
    isolationPairRatios: times.subject.map((ms, i) => ms / times.plain[i]),
    isolationCost: median(times.subject.map((ms, i) => ms / times.plain[i])), isolationGoal: "<= 1.05",
    warmRps: { subject: median(warm.subject), plain: median(warm.plain) }, warmGoal: ">= 0.95",
    warmPairRatios: warm.subject.map((rps, i) => rps / warm.plain[i]), warmRatio: median(warm.subject.map((rps, i) => rps / warm.plain[i])),
    floorAll: times.floor, subjectAll: times.subject, plainAll: times.plain,
    print() {
      console.log(`\n## ${this.name}  (${ROUNDS} alternating rounds, medians)`);
      console.log(`  floor   runc run -d + netns + overlay   ${fmt(f, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.floor), 1)}, max ${fmt(Math.max(...times.floor), 1)})`);
      console.log(`  subject gateway → worker → runc         ${fmt(s, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.subject), 1)}, max ${fmt(Math.max(...times.subject), 1)})`);
      console.log(`  plain   the same, --userns=false --writable-layer-mib=0 ${fmt(p, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.plain), 1)}, max ${fmt(Math.max(...times.plain), 1)})`);
      console.log(`  ratio ${fmt(this.ratio, 2)} (goal <= 1.5); user namespace + own disk vs without: ${fmt(this.isolationCost, 3)} ` +
        `(median of the ${this.isolationPairRatios.length} back-to-back pairs, ${fmt(Math.min(...this.isolationPairRatios), 2)}–${fmt(Math.max(...this.isolationPairRatios), 2)}; ` +
        `ratio of the medians ${fmt(s / p, 3)}; goal <= 1.05)`);
      console.log(`  warm: GET /health on a running container, ${WARM.connections} connections, ${WARM.rounds} × ${WARM.seconds} s alternating: ` +
        `${fmt(this.warmRps.subject)} req/s with, ${fmt(this.warmRps.plain)} without (medians); ratio ${fmt(this.warmRatio, 3)} ` +
        `(median of the ${this.warmPairRatios.length} back-to-back pairs, ${fmt(Math.min(...this.warmPairRatios), 2)}–${fmt(Math.max(...this.warmPairRatios), 2)}; goal >= 0.95)`);
    },
  };
}
