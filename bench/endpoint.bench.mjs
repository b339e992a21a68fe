// Deployed endpoints, end to end, on a local runc worker: an endpoint on Image.scratch() whose
// handler returns { ok: true }, deployed with the CLI (`beta9 deploy FILE:EXPORT`).
//
// 1. Scale from zero: with no container of the stub running, `POST /endpoint/<name>` until the
//    response body is read, against the floor: a bare `runc run -d` of the same rootfs (the
//    scratch image the worker mounted), the same runner bundle at /beta9 and a copy of the same
//    code bundle at /app, in a fresh netns on a bridge, until the runner prints "runner ready"
//    and its own `POST /invoke` answers 200. Alternating rounds, medians; before each subject
//    round the stub (keepWarmSeconds 1) has scaled back to zero containers.
// 2. Warm overhead: one warm container; autocannon (in a child process) POSTing `{}` to the
//    gateway's route vs `{"input":{}}` straight to the container's /invoke, at 1 and 10
//    connections, alternating rounds, medians of req/s, p50 and p99, and CPU per request of the
//    gateway (this process) and of the runner (/proc/PID/stat of the container's first process).
import { execFile, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { request } from "undici";
import { startGateway } from "@beta9/gateway";
import { ensureRunnerBundle, runcUnavailableReason, startWorker } from "@beta9/worker";
import { containerPid, fmt, gatewayClient, median, prepareFloorHost, processCpuSeconds, runnerSecret } from "./lib.mjs";

const ZERO_ROUNDS = Math.max(8, Number(process.env.BENCH_ZERO_ROUNDS ?? 10));
const LOAD_ROUNDS = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 3));
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONCURRENCY = [1, 10];
const NAME = { zero: "b9zero", warm: "b9warm" };
const CPU = 1;
const MEMORY_MIB = 256;
/** Scale from zero is measured at these CPU sizes too (functions default to 0.125), each against a floor of the same quota. */
const SMALL_SIZES = [0.25, 0.125];
const zeroName = (cpu) => (cpu === CPU ? NAME.zero : `${NAME.zero}-${Math.round(cpu * 1000)}`);
const zeroExport = (cpu) => (cpu === CPU ? "zero" : `zero${Math.round(cpu * 1000)}`);

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const cliMain = here("../packages/cli/dist/main.js");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const quiet = (cmd, args) => { try { sh(cmd, args); } catch { /* cleanup of what may not exist */ } };

// The app: plain workload objects (what endpoint() returns), so the file needs no import and can
// live outside the repo; the image spec is exactly Image.scratch().toSpec().
const APP = `
const image = { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) };
const ok = async () => ({ ok: true });
export const zero = {
  __beta9Workload: true, kind: "endpoint", name: ${JSON.stringify(NAME.zero)}, handler: ok, image,
  config: { cpu: ${CPU}, memory: "${MEMORY_MIB}Mi", keepWarmSeconds: 1 },
};
${SMALL_SIZES.map((cpu) => `export const ${zeroExport(cpu)} = {
  __beta9Workload: true, kind: "endpoint", name: ${JSON.stringify(zeroName(cpu))}, handler: ok, image,
  config: { cpu: ${cpu}, memory: "${MEMORY_MIB}Mi", keepWarmSeconds: 1 },
};`).join("\n")}
export const warm = {
  __beta9Workload: true, kind: "endpoint", name: ${JSON.stringify(NAME.warm)}, handler: ok, image,
  config: {
    cpu: ${CPU}, memory: "${MEMORY_MIB}Mi", keepWarmSeconds: 3600, concurrentRequests: 10,
    autoscaler: { type: "queue_depth", maxContainers: 1, tasksPerContainer: 10 },
  },
};
`;

function beta9(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliMain, ...args], { env: { ...process.env, ...env, NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** POSTs `body` until the answer is 200 (503 while the runner loads, refused before it listens). */
export async function firstInvoke(url, deadlineMs = 15_000, headers = {}) {
  const end = performance.now() + deadlineMs;
  for (;;) {
    try {
      const res = await request(url, {
        method: "POST", headers: { "content-type": "application/json", ...headers }, body: '{"input":{}}', headersTimeout: 2000, bodyTimeout: 2000,
      });
      const text = await res.body.text();
      if (res.statusCode === 200) {
        if (JSON.parse(text).result?.ok !== true) throw new Error(`${url} answered ${text}`);
        return;
      }
    } catch (err) {
      if (err instanceof SyntaxError || /answered/.test(err.message)) throw err;
    }
    if (performance.now() > end) throw new Error(`${url} did not answer 200 within ${deadlineMs} ms`);
    await sleep(1);
  }
}

const FLOOR = { bridge: "b9epfl0", netnsPrefix: "b9epfl-", vethPrefix: "b9epv", cgroupParent: "b9epfloor" };
const HIERARCHIES = ["memory", "cpu", "cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd", "unified"];

/** Removes what a killed earlier run's floor left: containers, mounts under `dir`, netns, veths, bridge, cgroups. */
export function reapFloor(dir) {
  const runcRoot = join(dir, "runc-root");
  if (existsSync(runcRoot)) {
    let ids = [];
    try { ids = sh("runc", ["--root", runcRoot, "list", "-q"]).split("\n").filter(Boolean); } catch { /* none */ }
    for (const id of ids) quiet("runc", ["--root", runcRoot, "delete", "-f", id]);
  }
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1]).filter((m) => m?.startsWith(`${dir}/`));
  for (const m of mounts.reverse()) quiet("umount", [m]);
  for (const line of sh("ip", ["-o", "link", "show", "type", "veth"]).split("\n")) {
    const name = /^\d+: ([^@:]+)/.exec(line)?.[1];
    if (name?.startsWith(FLOOR.vethPrefix)) quiet("ip", ["link", "del", name]);
  }
  for (const ns of sh("ip", ["netns", "list"]).split("\n").map((l) => l.split(" ")[0])) {
    if (ns.startsWith(FLOOR.netnsPrefix)) quiet("ip", ["netns", "del", ns]);
  }
  quiet("ip", ["link", "del", FLOOR.bridge]);
  for (const h of HIERARCHIES) {
    const parent = `/sys/fs/cgroup/${h}/${FLOOR.cgroupParent}`;
    if (!existsSync(parent)) continue;
    for (const child of readdirSync(parent, { withFileTypes: true })) if (child.isDirectory()) quiet("rmdir", [join(parent, child.name)]);
    quiet("rmdir", [parent]);
  }
}

/**
 * The floor: the same rootfs, runner, code, limits and network shape, started by hand. `command`
 * and `env` replace the Node runner's (the Python bench runs `python3 -m beta9.runner`).
 */
export function makeFloor(dir, { rootfs, runnerDir, codeDir, handler, command, env = [], cpu = CPU, memoryMiB = MEMORY_MIB }) {
  const { bridge, cgroupParent } = FLOOR;
  const { runcRoot, template } = prepareFloorHost(dir, bridge, "10.219.254.1/24");
  const live = new Set();
  let n = 0;
  return {
    /** `cpu` overrides the floor's quota for this start (the small sizes). */
    async start(options = {}) {
      n += 1;
      const id = `${FLOOR.netnsPrefix}${n}`;
      const ns = `${FLOOR.netnsPrefix}${n}`;
      const veth = `${FLOOR.vethPrefix}${n}`;
      const ip = `10.219.254.${10 + (n % 200)}`;
      const b = join(dir, id);
      mkdirSync(join(b, "upper"), { recursive: true }); mkdirSync(join(b, "work")); mkdirSync(join(b, "rootfs"));
      const stop = () => {
        live.delete(stop);
        quiet("runc", ["--root", runcRoot, "delete", "-f", id]);
        quiet("umount", [join(b, "rootfs")]);
        quiet("ip", ["link", "del", veth]);
        quiet("ip", ["netns", "del", ns]);
        for (const h of HIERARCHIES) quiet("rmdir", [`/sys/fs/cgroup/${h}/${cgroupParent}/${id}`]);
        rmSync(b, { recursive: true, force: true });
      };
      live.add(stop);
      const t0 = performance.now();
      sh("ip", ["netns", "add", ns]);
      execFileSync("ip", ["-batch", "-"], { input: `link add ${veth} type veth peer name eth0 netns ${ns}\nlink set ${veth} master ${bridge} up\n` });
      execFileSync("ip", ["-n", ns, "-batch", "-"], { input: `addr add ${ip}/24 dev eth0\nlink set eth0 up\nlink set lo up\n` });
      sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${join(b, "upper")},workdir=${join(b, "work")}`, join(b, "rootfs")]);
      const config = structuredClone(template);
      config.process.terminal = false;
      config.process.args = command ?? ["/beta9/lib/ld-linux-x86-64.so.2", "--library-path", "/beta9/lib", "/beta9/bin/node", "/beta9/runner/main.js"];
      config.process.env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "PORT=8000",
        "BETA9_CODE_DIR=/app", `BETA9_HANDLER=${handler}`, "BETA9_CONCURRENCY=1", ...env];
      config.root = { path: "rootfs", readonly: false };
      config.mounts.push({ destination: "/beta9", type: "bind", source: runnerDir, options: ["rbind", "ro", "nosuid", "nodev"] });
      config.mounts.push({ destination: "/app", type: "bind", source: codeDir, options: ["rbind", "ro", "nosuid", "nodev"] });
      config.linux.namespaces = config.linux.namespaces.map((x) => (x.type === "network" ? { type: "network", path: `/var/run/netns/${ns}` } : x));
      config.linux.cgroupsPath = `/${cgroupParent}/${id}`;
      config.linux.resources = { ...config.linux.resources, memory: { limit: memoryMiB * 1024 * 1024 }, cpu: { period: 100000, quota: Math.round((options.cpu ?? cpu) * 100000) } };
      writeFileSync(join(b, "config.json"), JSON.stringify(config));
      // Detached, the container inherits runc's stdout: the runner's "runner ready" line there says
      // when to send the one /invoke (polling for it instead makes the floor ~10 ms slower here).
      const runc = spawn("runc", ["--root", runcRoot, "run", "-d", "--bundle", b, id], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      runc.stderr.on("data", (d) => { if (stderr.length < 2000) stderr += d; });
      let runMs = Number.NaN;
      runc.once("exit", () => (runMs = performance.now() - t0));
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`floor container ${id}: no "runner ready" line within 15 s`)), 15_000);
        const done = (err) => { clearTimeout(timer); lines.off("line", onLine); err ? reject(err) : resolve(); };
        const onLine = (line) => { if (line.startsWith("runner ready")) done(); };
        const lines = createInterface({ input: runc.stdout });
        lines.on("line", onLine);
        lines.once("close", () => done(new Error(`floor container ${id} closed its stdout before it was ready: ${stderr.trim()}`)));
      });
      await firstInvoke(`http://${ip}:8000/invoke`);
      return { ms: performance.now() - t0, runMs, stop };
    },
    close() {
      for (const stop of [...live]) stop();
      reapFloor(dir);
    },
  };
}

/** One load round in a child process; throws on any non-2xx or error. */
export async function loadRound({ url, headers, body, connections, duration }) {
  const child = spawn(process.execPath, [here("./servers/post-load.mjs"), JSON.stringify({ url, headers, body, connections, duration })],
    { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
    child.once("error", reject);
  });
  const r = JSON.parse(line);
  if (r.non2xx > 0 || r.errors > 0 || r.requests === 0) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.requests} requests`);
  return r;
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "endpoint", skipped: unavailable, print() { console.log(`\n## endpoint: skipped (${unavailable})`); } };
  // A fixed dir, so that a run killed before its cleanup is cleaned up by the next one: the floor's
  // leftovers here, the worker's by startWorker's reap of the same state dir and name.
  const dir = join(tmpdir(), "beta9-bench-endpoint");
  const workerDir = join(dir, "worker");
  if (existsSync(dir)) {
    reapFloor(join(dir, "floor"));
    for (const entry of readdirSync(dir)) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  const times = { floor: [], subject: [], floorRun: [], subjectSubmitted: [], subjectRunning: [] };
  const small = Object.fromEntries(SMALL_SIZES.map((cpu) => [cpu, { floor: [], subject: [] }]));
  const loads = {};
  for (const c of CONCURRENCY) loads[c] = { direct: [], gateway: [] };
  let gateway;
  let worker;
  let floor;
  let gw;
  try {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
    const key = gateway.bootstrap.token.key;
    gw = gatewayClient(gateway.url, key);
    const { auth, api, active, waitZero, call } = gw;
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: workerDir, logger: pino({ level: "warn" }),
      runtime: "runc", name: "b9ep", subnet: "10.219.253.0/24", workerId: "bench-endpoint",
    });
    await worker.connected;

    const app = join(dir, "app.mjs");
    writeFileSync(app, APP);
    const stubs = {};
    for (const exportName of ["zero", "warm", ...SMALL_SIZES.map(zeroExport)]) {
      const deployed = await beta9(["deploy", `${app}:${exportName}`, "--json", "-q"], { BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg") });
      if (deployed.code !== 0) throw new Error(`beta9 deploy ${exportName} failed (${deployed.code}): ${deployed.stderr}`);
      stubs[exportName] = JSON.parse(deployed.stdout).stubId;
    }
    const subjectStart = async (cpu = CPU) => {
      const stubId = stubs[zeroExport(cpu)];
      await waitZero(stubId);
      const wall = Date.now();
      const t0 = performance.now();
      await call(zeroName(cpu));
      const ms = performance.now() - t0;
      const [c] = await active(stubId);
      const offset = (iso) => (iso ? Date.parse(iso) - wall : Number.NaN);
      return { ms, submitted: offset(c?.createdAt), running: offset(c?.startedAt) };
    };

    // ---- 1. scale from zero ----
    // The first call builds nothing new but fetches image and code to the worker: a warm-up, like the floor's.
    await subjectStart();
    const stub = await api("GET", `/api/v1/stub/${stubs.zero}`).then((r) => r.stub ?? r);
    const imageMount = join(workerDir, "image-cache", "mnt", stub.config.imageId);
    if (!readFileSync("/proc/mounts", "utf8").includes(` ${imageMount} `)) throw new Error(`the scratch image is not mounted at ${imageMount}`);
    const cachedCode = join(workerDir, "code", stub.objectId);
    if (!existsSync(cachedCode)) throw new Error(`no code bundle at ${cachedCode}`);
    const codeCopy = join(dir, "floor-code");
    cpSync(cachedCode, codeCopy, { recursive: true });
    mkdirSync(join(dir, "floor"));
    floor = makeFloor(join(dir, "floor"), {
      rootfs: imageMount, runnerDir: ensureRunnerBundle(workerDir).dir, codeDir: codeCopy, handler: stub.config.handler,
    });
    (await floor.start()).stop();
    for (let i = 0; i < ZERO_ROUNDS; i++) {
      const f = await floor.start();
      times.floor.push(f.ms);
      times.floorRun.push(f.runMs);
      f.stop();
      const s = await subjectStart();
      times.subject.push(s.ms);
      times.subjectSubmitted.push(s.submitted);
      times.subjectRunning.push(s.running);
    }
    // The same at small sizes: Node's start-up under a small quota is what a cold start waits for.
    for (const cpu of SMALL_SIZES) {
      await subjectStart(cpu);
      for (let i = 0; i < ZERO_ROUNDS; i++) {
        const f = await floor.start({ cpu });
        small[cpu].floor.push(f.ms);
        f.stop();
        small[cpu].subject.push((await subjectStart(cpu)).ms);
      }
    }

    // ---- 2. warm overhead ----
    await call(NAME.warm);
    const [warmContainer] = await active(stubs.warm);
    const addr = (await api("GET", `/api/v1/container/${warmContainer.id}`)).ports["8000"];
    const direct = { "content-type": "application/json", authorization: `Bearer ${runnerSecret(workerDir, warmContainer.id)}` };
    const target = {
      direct: { url: `http://${addr.host}:${addr.port}/invoke`, headers: direct, body: '{"input":{}}' },
      gateway: { url: `${gateway.url}/endpoint/${NAME.warm}`, headers: auth, body: "{}" },
    };
    await firstInvoke(target.direct.url, 15_000, { authorization: direct.authorization });
    for (const name of ["direct", "gateway"]) await loadRound({ ...target[name], connections: 10, duration: 2 }); // JIT, pools
    // CPU per request: this process (the gateway; the worker in it idles meanwhile) and the runner
    // (the container's first process), read around each round.
    const runnerPid = containerPid(workerDir, warmContainer.id);
    const cpuNow = () => ({ gateway: process.cpuUsage(), runner: processCpuSeconds(runnerPid) });
    for (let i = 0; i < LOAD_ROUNDS; i++) {
      for (const c of CONCURRENCY) {
        for (const name of ["direct", "gateway"]) {
          const before = cpuNow();
          const r = await loadRound({ ...target[name], connections: c, duration: DURATION });
          const used = process.cpuUsage(before.gateway);
          r.gatewayCpuUs = (used.user + used.system) / r.requests;
          r.runnerCpuUs = ((processCpuSeconds(runnerPid) - before.runner) * 1e6) / r.requests;
          loads[c][name].push(r);
        }
      }
    }
    if ((await active(stubs.warm)).length !== 1) throw new Error("the warm endpoint did not stay on one container");
  } finally {
    await gw?.stopAll();
    floor?.close();
    await worker?.close(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const f = median(times.floor);
  const s = median(times.subject);
  const summary = (rs) => ({
    rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)),
    gatewayCpuUs: median(rs.map((r) => r.gatewayCpuUs)), runnerCpuUs: median(rs.map((r) => r.runnerCpuUs)),
  });
  const warm = {};
  for (const c of CONCURRENCY) {
    const d = summary(loads[c].direct);
    const g = summary(loads[c].gateway);
    warm[c] = { direct: d, gateway: g, ratio: g.rps / d.rps, addedP50Ms: g.p50 - d.p50, gatewayCpuVsRunnerCpu: g.gatewayCpuUs / d.runnerCpuUs };
  }
  const ms = (x) => `${fmt(x, 1).padStart(7)} ms`;
  const lat = (x) => `${fmt(x, 3)} ms`;
  return {
    name: "endpoint: scale from zero and warm overhead (Image.scratch() endpoint on a runc worker)",
    scaleFromZero: {
      rounds: ZERO_ROUNDS, floorMs: f, subjectMs: s, ratio: s / f, goal: "<= 2",
      floorRunMs: median(times.floorRun), subjectSubmittedMs: median(times.subjectSubmitted), subjectRunningMs: median(times.subjectRunning),
      floorAll: times.floor, subjectAll: times.subject,
    },
    scaleFromZeroSmall: Object.fromEntries(SMALL_SIZES.map((cpu) => {
      const [sf, ss] = [median(small[cpu].floor), median(small[cpu].subject)];
      return [cpu, { floorMs: sf, subjectMs: ss, ratio: ss / sf, goal: "<= 2", floorAll: small[cpu].floor, subjectAll: small[cpu].subject }];
    })),
    warm: {
      rounds: LOAD_ROUNDS, durationS: DURATION, goal: "throughput ratio >= 0.6; p50 added < 1 ms at concurrency 1; gateway CPU per request <= the runner's own",
      ...Object.fromEntries(CONCURRENCY.map((c) => [`c${c}`, { ...warm[c], directAll: loads[c].direct, gatewayAll: loads[c].gateway }])),
    },
    print() {
      console.log(`\n## ${this.name}`);
      console.log(`  scale from zero (${ZERO_ROUNDS} alternating rounds, medians)`);
      console.log(`    floor   runc run -d + netns + overlay → /invoke 200   ${ms(f)}   (min ${fmt(Math.min(...times.floor), 1)}, max ${fmt(Math.max(...times.floor), 1)}; runc run -d exited at ${fmt(this.scaleFromZero.floorRunMs, 1)})`);
      console.log(`    subject POST /endpoint/${NAME.zero} from zero → body     ${ms(s)}   (min ${fmt(Math.min(...times.subject), 1)}, max ${fmt(Math.max(...times.subject), 1)}; container submitted at ~${fmt(this.scaleFromZero.subjectSubmittedMs)}, RUNNING at ~${fmt(this.scaleFromZero.subjectRunningMs)})`);
      console.log(`    ratio ${fmt(s / f, 2)} (goal <= 2)`);
      for (const cpu of SMALL_SIZES) {
        const r = this.scaleFromZeroSmall[cpu];
        console.log(`    cpu ${String(cpu).padEnd(5)} floor ${ms(r.floorMs)}   subject ${ms(r.subjectMs)}   ratio ${fmt(r.ratio, 2)} (goal <= 2; floor at the same quota, no start-up burst)`);
      }
      console.log(`  warm overhead (one container, ${LOAD_ROUNDS}×${DURATION}s alternating rounds, medians)`);
      for (const c of CONCURRENCY) {
        const w = warm[c];
        console.log(`    c=${String(c).padEnd(2)} direct  /invoke          ${fmt(w.direct.rps).padStart(7)} req/s   p50 ${lat(w.direct.p50)}   p99 ${lat(w.direct.p99)}`);
        console.log(`         gateway /endpoint/:name ${fmt(w.gateway.rps).padStart(7)} req/s   p50 ${lat(w.gateway.p50)}   p99 ${lat(w.gateway.p99)}`);
        console.log(`         ratio ${fmt(w.ratio, 2)} (goal >= 0.6), p50 added ${lat(w.addedP50Ms)}${c === 1 ? " (goal < 1 ms)" : ""}`);
        console.log(`         CPU per request: runner ${fmt(w.direct.runnerCpuUs, 1)} µs direct, ${fmt(w.gateway.runnerCpuUs, 1)} µs through the gateway; gateway ${fmt(w.gateway.gatewayCpuUs, 1)} µs (${fmt(w.gatewayCpuVsRunnerCpu, 2)}× the runner's own; goal <= 1)`);
      }
    },
  };
}
