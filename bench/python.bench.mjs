// Python workloads, end to end, on a local runc worker, deployed with the CLI from a .py file
// (`beta9 deploy app.py:FUNCTION`) on the SDK's default image (Debian bookworm with python3.11).
//
// 1. Scale from zero: `POST /endpoint/<name>` with no container running, until the body is read,
//    against the same floor as the Node endpoint bench (endpoint.bench.mjs): a bare `runc run -d`
//    of the same image rootfs, the same SDK at /beta9/python and code at /app, in a fresh netns,
//    running `python3 -m beta9.runner` until it prints "runner ready" and its /invoke answers 200.
// 2. Warm overhead: one warm container; the gateway's route vs the Python runner's /invoke, at 1
//    and 10 connections (autocannon in a child process), alternating rounds, medians.
// 3. `.map` of 200 inputs × 100 ms of handler time over 10 warm containers (one call each at a
//    time), from the Python SDK, against the ideal 200 × 0.1 s / 10 = 2 s.
import { execFile, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startGateway } from "@beta9/gateway";
import { ensureRunnerBundle, runcUnavailableReason, startWorker } from "@beta9/worker";
import { firstInvoke, loadRound, makeFloor, reapFloor } from "./endpoint.bench.mjs";
import { fmt, gatewayClient, median, runnerSecret } from "./lib.mjs";

const ZERO_ROUNDS = Math.max(5, Number(process.env.BENCH_ZERO_ROUNDS ?? 8));
const LOAD_ROUNDS = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 3));
const MAP_ROUNDS = 3;
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONCURRENCY = [1, 10];
const MAP = { inputs: 200, sleepS: 0.1, containers: 10 };
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const cliMain = here("../packages/cli/dist/main.js");
const sdkDir = here("../sdk/python");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The debootstrap base is built once and shared with the Python tests (sdk/python/tests/conftest.py).
const CACHE = process.env.BETA9_TEST_CACHE || "/var/tmp/beta9-test-cache";

const APP = `
import time
from beta9 import endpoint, function, QueueDepthAutoscaler

@endpoint(name="pyzero", cpu=1, memory=256, keep_warm_seconds=1)
def zero():
    return {"ok": True}

@endpoint(name="pywarm", cpu=1, memory=256, keep_warm_seconds=3600, concurrent_requests=10,
          autoscaler=QueueDepthAutoscaler(max_containers=1, tasks_per_container=10))
def warm():
    return {"ok": True}

@function(name="pymap", cpu=0.1, memory=128, keep_warm_seconds=600,
          autoscaler=QueueDepthAutoscaler(max_containers=${MAP.containers}, tasks_per_container=1))
def nap(i):
    time.sleep(${MAP.sleepS})
    return i
`;

// Runs in a python3 process: one timed .map per round, results checked in order.
const MAPPER = `
import json, sys, time
from app import nap
out = []
for _ in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    got = list(nap.map(range(${MAP.inputs})))
    out.append((time.perf_counter() - t0) * 1000)
    assert got == list(range(${MAP.inputs})), got[:10]
print(json.dumps(out))
`;

function beta9(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliMain, ...args], { env: { ...process.env, ...env, NO_COLOR: "1" }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "python", skipped: unavailable, print() { console.log(`\n## python: skipped (${unavailable})`); } };
  if (spawnSync("python3", ["--version"]).status !== 0) {
    return { name: "python", skipped: "python3 is not installed", print() { console.log("\n## python: skipped (python3 is not installed)"); } };
  }
  // A fixed dir, so that a run killed before its cleanup is cleaned up by the next one.
  const dir = join(tmpdir(), "beta9-bench-python");
  const workerDir = join(dir, "worker");
  if (existsSync(dir)) {
    reapFloor(join(dir, "floor"));
    for (const entry of readdirSync(dir)) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  }
  mkdirSync(workerDir, { recursive: true });
  mkdirSync(join(CACHE, "base-images"), { recursive: true });
  if (!existsSync(join(workerDir, "base-images"))) symlinkSync(join(CACHE, "base-images"), join(workerDir, "base-images"));
  const times = { floor: [], subject: [], map: [] };
  const loads = Object.fromEntries(CONCURRENCY.map((c) => [c, { direct: [], gateway: [] }]));
  let gateway;
  let worker;
  let floor;
  let gw;
  try {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
    const key = gateway.bootstrap.token.key;
    gw = gatewayClient(gateway.url, key);
    const { auth, api, active, waitZero, call } = gw;
    const env = { BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg") };
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: workerDir, logger: pino({ level: "warn" }),
      runtime: "runc", name: "b9py", subnet: "10.219.249.0/24", workerId: "bench-python",
    });
    await worker.connected;

    const appDir = join(dir, "app");
    mkdirSync(appDir);
    writeFileSync(join(appDir, "app.py"), APP);
    writeFileSync(join(appDir, "mapper.py"), MAPPER);
    const stubs = {};
    for (const fn of ["zero", "warm", "nap"]) {
      // The first deploy builds the image (debootstrap, once per cache): minutes, not measured.
      const deployed = await beta9(["deploy", `${join(appDir, "app.py")}:${fn}`, "--json", "-q"], env);
      if (deployed.code !== 0) throw new Error(`beta9 deploy app.py:${fn} failed (${deployed.code}): ${deployed.stderr}`);
      stubs[fn] = JSON.parse(deployed.stdout).stubId;
    }
    const subjectStart = async () => {
      await waitZero(stubs.zero);
      const t0 = performance.now();
      await call("pyzero");
      return performance.now() - t0;
    };

    // ---- 1. scale from zero ----
    await subjectStart(); // fetches image and code to the worker, like the floor's warm-up
    const stub = await api("GET", `/api/v1/stub/${stubs.zero}`).then((r) => r.stub ?? r);
    const imageMount = join(workerDir, "image-cache", "mnt", stub.config.imageId);
    if (!readFileSync("/proc/mounts", "utf8").includes(` ${imageMount} `)) throw new Error(`the python image is not mounted at ${imageMount}`);
    const codeCopy = join(dir, "floor-code");
    cpSync(join(workerDir, "code", stub.objectId), codeCopy, { recursive: true });
    mkdirSync(join(dir, "floor"));
    const bundle = ensureRunnerBundle(workerDir);
    floor = makeFloor(join(dir, "floor"), {
      rootfs: imageMount, runnerDir: bundle.dir, codeDir: codeCopy, handler: stub.config.handler,
      command: ["python3", "-m", "beta9.runner"], env: [`PYTHONPATH=${bundle.pythonPath}`, "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"],
    });
    (await floor.start()).stop();
    for (let i = 0; i < ZERO_ROUNDS; i++) {
      const f = await floor.start();
      times.floor.push(f.ms);
      f.stop();
      times.subject.push(await subjectStart());
    }
    floor.close();
    floor = undefined;

    // ---- 2. warm overhead ----
    await call("pywarm");
    const [warmContainer] = await active(stubs.warm);
    const addr = (await api("GET", `/api/v1/container/${warmContainer.id}`)).ports["8000"];
    const direct = { "content-type": "application/json", authorization: `Bearer ${runnerSecret(workerDir, warmContainer.id)}` };
    const target = {
      direct: { url: `http://${addr.host}:${addr.port}/invoke`, headers: direct, body: '{"input":{}}' },
      gateway: { url: `${gateway.url}/endpoint/pywarm`, headers: auth, body: "{}" },
    };
    await firstInvoke(target.direct.url, 15_000, { authorization: direct.authorization });
    for (const name of ["direct", "gateway"]) await loadRound({ ...target[name], connections: 10, duration: 2 });
    for (let i = 0; i < LOAD_ROUNDS; i++) {
      for (const c of CONCURRENCY) {
        for (const name of ["direct", "gateway"]) loads[c][name].push(await loadRound({ ...target[name], connections: c, duration: DURATION }));
      }
    }

    // ---- 3. .map over 10 containers ----
    const mapper = (rounds) => new Promise((resolve, reject) => {
      execFile("python3", [join(appDir, "mapper.py"), String(rounds)], {
        cwd: appDir, env: { ...process.env, ...env, PYTHONPATH: sdkDir, PYTHONDONTWRITEBYTECODE: "1" }, maxBuffer: 16 << 20,
      }, (err, stdout, stderr) => (err ? reject(new Error(`mapper.py: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
    });
    await mapper(1); // scales pymap up to its 10 containers
    for (let i = 0; i < 100 && (await active(stubs.nap)).length < MAP.containers; i++) await sleep(100);
    times.map = await mapper(MAP_ROUNDS);
    times.mapContainers = (await active(stubs.nap)).length;
  } finally {
    await gw?.stopAll();
    floor?.close();
    await worker?.close(2000);
    await gateway?.close();
    for (const entry of existsSync(dir) ? readdirSync(dir) : []) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  }

  const f = median(times.floor);
  const s = median(times.subject);
  const summary = (rs) => ({ rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) });
  const warm = {};
  for (const c of CONCURRENCY) {
    const d = summary(loads[c].direct);
    const g = summary(loads[c].gateway);
    warm[c] = { direct: d, gateway: g, ratio: g.rps / d.rps, addedP50Ms: g.p50 - d.p50 };
  }
  const ideal = (MAP.inputs * MAP.sleepS * 1000) / MAP.containers;
  const mapMs = median(times.map);
  const lat = (x) => `${fmt(x, 3)} ms`;
  return {
    name: "python: scale from zero, warm overhead and .map (Python endpoint and function on a runc worker)",
    scaleFromZero: { rounds: ZERO_ROUNDS, floorMs: f, subjectMs: s, ratio: s / f, goal: "<= 2", floorAll: times.floor, subjectAll: times.subject },
    warm: {
      rounds: LOAD_ROUNDS, durationS: DURATION, goal: "throughput ratio >= 0.6",
      ...Object.fromEntries(CONCURRENCY.map((c) => [`c${c}`, { ...warm[c], directAll: loads[c].direct, gatewayAll: loads[c].gateway }])),
    },
    map: { inputs: MAP.inputs, sleepS: MAP.sleepS, containers: times.mapContainers, idealMs: ideal, ms: mapMs, efficiency: ideal / mapMs, all: times.map, goal: ">= 0.8" },
    print() {
      console.log(`\n## ${this.name}`);
      console.log(`  scale from zero (${ZERO_ROUNDS} alternating rounds, medians)`);
      console.log(`    floor   runc run -d python3 -m beta9.runner → /invoke 200   ${fmt(f, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.floor), 1)}, max ${fmt(Math.max(...times.floor), 1)})`);
      console.log(`    subject POST /endpoint/pyzero from zero → body          ${fmt(s, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.subject), 1)}, max ${fmt(Math.max(...times.subject), 1)})`);
      console.log(`    ratio ${fmt(s / f, 2)} (goal <= 2)`);
      console.log(`  warm overhead (one container, ${LOAD_ROUNDS}×${DURATION}s alternating rounds, medians)`);
      for (const c of CONCURRENCY) {
        const w = warm[c];
        console.log(`    c=${String(c).padEnd(2)} direct  /invoke          ${fmt(w.direct.rps).padStart(7)} req/s   p50 ${lat(w.direct.p50)}   p99 ${lat(w.direct.p99)}`);
        console.log(`         gateway /endpoint/:name ${fmt(w.gateway.rps).padStart(7)} req/s   p50 ${lat(w.gateway.p50)}   p99 ${lat(w.gateway.p99)}`);
        console.log(`         ratio ${fmt(w.ratio, 2)} (goal >= 0.6)`);
      }
      console.log(`  .map of ${MAP.inputs} × ${MAP.sleepS * 1000} ms over ${times.mapContainers} containers (${MAP_ROUNDS} rounds, median)`);
      console.log(`    ${fmt(mapMs)} ms vs ideal ${fmt(ideal)} ms: efficiency ${fmt(ideal / mapMs, 2)} (goal >= 0.8)   (all: ${times.map.map((x) => fmt(x)).join(", ")} ms)`);
    },
  };
}
