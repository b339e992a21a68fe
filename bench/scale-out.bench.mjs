// Several gateways (issue: scale-out), every part a process of its own on this machine: `beta9
// gateway` processes, `beta9 worker --runtime process` workers, Debian's Postgres (a throwaway
// server) and Debian's HAProxy with the repo's sample config.
//
// 1. Task put → COMPLETE throughput of a no-op task queue (N puts, 50 in flight from autocannon in
//    a child process; from the first put's created_at to the last task ended, read from the store):
//      sqlite   one gateway on SQLite, one worker (the single-node default: the floor);
//      pg       one gateway on Postgres, one worker;
//      pg×3     three gateways on one Postgres behind HAProxy, one worker on each, puts through
//               HAProxy (round robin).
//    Alternating rounds, medians. CPU-ms per task of each gateway process (/proc/PID/stat around
//    the round): on 2 cores three gateways show their cost, not a gain. Projection: a cluster of
//    G gateways on G cores runs about G × 1000 / (CPU-ms per task per gateway) tasks/s until
//    Postgres is the limit, since each gateway's share of the work is its own puts and runs.
// 2. Endpoint warm throughput (c=10, 5 s, alternating rounds, medians): straight to the gateway
//    that has the worker; through HAProxy over it and two gateways without a worker (two calls in
//    three are forwarded); straight to a gateway without a worker (every call forwarded).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import pg from "pg";
import { fmt, median, processCpuSeconds } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_SCALE_TASKS ?? 3000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const IN_FLIGHT = 50;
const DURATION = Number(process.env.BENCH_DURATION ?? 5);

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const CLI = here("../packages/cli/dist/main.js");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const APP = `
  const image = { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) };
  const config = { cpu: 1, memory: "256Mi", keepWarmSeconds: 3600, concurrentRequests: ${IN_FLIGHT}, maxPendingTasks: 1000000,
    autoscaler: { type: "queue_depth", maxContainers: 1, tasksPerContainer: ${IN_FLIGHT} } };
  export const noop = { __beta9Workload: true as const, kind: "taskqueue" as const, name: "b9so-noop", config, image, handler: async () => null };
  export const echo = { __beta9Workload: true as const, kind: "endpoint" as const, name: "b9so-echo", image,
    config: { cpu: 1, memory: "256Mi", keepWarmSeconds: 3600, concurrentRequests: 32 }, handler: async () => ({ ok: true }) };
`;

/** A child process, its output collected. */
function child(args, env = process.env) {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout.on("data", (c) => (output += c));
  proc.stderr.on("data", (c) => (output += c));
  return { proc, output: () => output };
}

async function waitFor(what, check, ms = 30_000, detail = () => "") {
  const t0 = Date.now();
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms\n${detail()}`);
    await sleep(25);
  }
}

async function stopProc(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** One `beta9 gateway` process; resolves with its URL (and admin token, printed on a fresh store). */
async function gateway(dir, name, args, env) {
  const g = child(["gateway", "--port", "0", "--log-level", "warn", "--data-dir", join(dir, name), ...args], env);
  await waitFor(`gateway ${name} listening`, () => /^gateway: http:\/\/127\.0\.0\.1:\d+$/m.test(g.output()), 60_000, g.output);
  return { ...g, url: /^gateway: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(g.output())[1], key: /admin token: (\S+)/.exec(g.output())?.[1] };
}

async function api(url, key, method, path, body) {
  const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, ...(body && { body: JSON.stringify(body) }) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** A worker (process runtime) dialling `url`; resolves once it is connected there. */
async function worker(dir, id, url, key, env) {
  const token = (await api(url, key, "POST", "/api/v1/token", { type: "worker" })).key;
  const w = child(["worker", "--gateway", url, "--token", token, "--runtime", "process", "--allow-unisolated", "--state-dir", join(dir, id), "--id", id], env);
  await waitFor(`worker ${id} connected`, async () => (await api(url, key, "GET", "/api/v1/worker")).items.some((x) => x.id === id && x.connected), 30_000, w.output);
  return w;
}

/** `amount` POSTs from autocannon in a child process (bench/servers/post-load.mjs): its JSON summary. */
async function post(url, headers, o) {
  const proc = spawn(process.execPath, [here("./servers/post-load.mjs"), JSON.stringify({ url, headers, body: "{}", connections: o.connections, ...o })],
    { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).once("line", resolve);
    proc.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const r = JSON.parse(line);
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return r;
}

export async function run() {
  const { postgresUnavailableReason, startTestPostgres } = await import("@beta9/gateway/testing/postgres");
  const { haproxyUnavailableReason, startHaproxy } = await import("../packages/cli/dist/testing/haproxy.js");
  const unavailable = postgresUnavailableReason() ?? haproxyUnavailableReason();
  if (unavailable) return { name: "scale-out", skipped: unavailable, print() { console.log(`\n## scale-out: skipped (${unavailable})`); } };
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-scale-"));
  const env = { ...process.env, BETA9_CONFIG_DIR: join(dir, "cfg") };
  delete env.BETA9_STORE;
  delete env.BETA9_OBJECTS;
  const procs = [];
  let postgres, haproxy, forwardProxy;
  const clients = [];
  const tasks = { sqlite: [], pg: [], pg3: [] };
  const cpuMs = { sqlite: [], pg: [], pg3: [] };
  const endpoint = { direct: [], haproxy: [], forwarded: [] };
  try {
    postgres = await startTestPostgres();
    const app = join(dir, "app.ts");
    writeFileSync(app, APP);
    const deploy = async (url, key, name) => {
      const d = child(["deploy", `${app}:${name}`, "-q"], { ...env, BETA9_GATEWAY: url, BETA9_TOKEN: key });
      const code = await new Promise((resolve) => d.proc.once("close", resolve));
      if (code !== 0) throw new Error(`deploy ${name}: ${d.output()}`);
    };

    // The three setups, all up at once (idle between rounds), so that rounds alternate.
    const sqliteGw = await gateway(dir, "sqlite", [], env);
    procs.push(sqliteGw.proc);
    procs.push((await worker(dir, "w-sqlite", sqliteGw.url, sqliteGw.key, env)).proc);
    await deploy(sqliteGw.url, sqliteGw.key, "noop");
    const sqliteDb = new Database(join(dir, "sqlite", "gateway.db"), { readonly: true, fileMustExist: true });
    clients.push({ end: async () => sqliteDb.close() });

    const pgStore = await postgres.createDatabase();
    const pgGw = await gateway(dir, "pg", ["--store", pgStore, "--objects", join(dir, "objects-pg")], env);
    procs.push(pgGw.proc);
    procs.push((await worker(dir, "w-pg", pgGw.url, pgGw.key, env)).proc);
    await deploy(pgGw.url, pgGw.key, "noop");

    const pg3Store = await postgres.createDatabase();
    const pg3 = [];
    for (const n of [1, 2, 3]) pg3.push(await gateway(dir, `pg3-${n}`, ["--store", pg3Store, "--objects", join(dir, "objects-pg3")], env));
    const pg3Key = pg3[0].key;
    for (const g of pg3) procs.push(g.proc);
    for (const [i, g] of pg3.entries()) procs.push((await worker(dir, `w-pg3-${i + 1}`, g.url, pg3Key, env)).proc);
    haproxy = await startHaproxy(dir, await freePort(), pg3.map((g) => g.url.replace("http://", "")));
    await deploy(haproxy.url, pg3Key, "noop");

    const counter = (url) => {
      const client = new pg.Client({ connectionString: url });
      clients.push(client);
      return client;
    };
    const pgCount = counter(pgStore);
    const pg3Count = counter(pg3Store);
    await pgCount.connect();
    await pg3Count.connect();
    const sqliteCounts = {
      open: sqliteDb.prepare("SELECT COUNT(*) AS n FROM task WHERE status IN ('PENDING', 'RUNNING', 'RETRY')"),
      all: sqliteDb.prepare("SELECT COUNT(*) AS n FROM task"),
      span: sqliteDb.prepare("SELECT MIN(created_at) AS first, MAX(ended_at) AS last FROM task WHERE created_at >= ?"),
    };
    const pgCounts = (client) => ({
      open: async () => Number((await client.query("SELECT COUNT(*) AS n FROM task WHERE status IN ('PENDING', 'RUNNING', 'RETRY')")).rows[0].n),
      all: async () => Number((await client.query("SELECT COUNT(*) AS n FROM task")).rows[0].n),
      span: async (since) => (await client.query("SELECT MIN(created_at) AS first, MAX(ended_at) AS last FROM task WHERE created_at >= $1", [since])).rows[0],
    });
    const setups = {
      sqlite: { url: sqliteGw.url, key: sqliteGw.key, gateways: [sqliteGw], counts: {
        open: async () => sqliteCounts.open.get().n, all: async () => sqliteCounts.all.get().n, span: async (since) => sqliteCounts.span.get(since),
      } },
      pg: { url: pgGw.url, key: pgGw.key, gateways: [pgGw], counts: pgCounts(pgCount) },
      pg3: { url: haproxy.url, key: pg3Key, gateways: pg3, counts: pgCounts(pg3Count) },
    };

    /** One round: `amount` puts; ms from the first put to the last task ended, and CPU-ms per task of each gateway. */
    const round = async (name, amount) => {
      const s = setups[name];
      const before = await s.counts.all();
      const since = new Date(Date.now() - 1).toISOString();
      const cpu0 = s.gateways.map((g) => processCpuSeconds(g.proc.pid));
      const putting = post(`${s.url}/taskqueue/b9so-noop`, { authorization: `Bearer ${s.key}`, "content-type": "application/json" }, { connections: IN_FLIGHT, amount });
      let failed;
      putting.catch((err) => (failed = err));
      for (;;) {
        if (failed) throw failed;
        if ((await s.counts.open()) === 0 && (await s.counts.all()) - before === amount) break;
        await sleep(10);
      }
      await putting;
      const cpu = s.gateways.map((g, i) => ((processCpuSeconds(g.proc.pid) - cpu0[i]) * 1000) / amount);
      const span = await s.counts.span(since);
      const toMs = (v) => (v instanceof Date ? v.getTime() : Date.parse(v));
      return { ms: toMs(span.last) - toMs(span.first), cpu };
    };
    for (const name of Object.keys(setups)) await round(name, 300); // warm: containers up, JIT
    for (let i = 0; i < ROUNDS; i++) {
      for (const name of Object.keys(setups)) {
        const r = await round(name, TASKS);
        tasks[name].push(r.ms);
        cpuMs[name].push(r.cpu);
      }
    }

    // ---- 2. endpoint calls forwarded between gateways ----
    // On the one-gateway Postgres store: two gateways without a worker join it, behind a second HAProxy.
    const others = [];
    for (const n of [2, 3]) others.push(await gateway(dir, `pg-${n}`, ["--store", pgStore, "--objects", join(dir, "objects-pg")], env));
    for (const g of others) procs.push(g.proc);
    const proxyDir = join(dir, "haproxy-forward");
    mkdirSync(proxyDir);
    forwardProxy = await startHaproxy(proxyDir, await freePort(), [pgGw, ...others].map((g) => g.url.replace("http://", "")));
    await deploy(pgGw.url, pgGw.key, "echo");
    const headers = { authorization: `Bearer ${pgGw.key}`, "content-type": "application/json" };
    const targets = { direct: pgGw.url, haproxy: forwardProxy.url, forwarded: others[0].url };
    for (const url of Object.values(targets)) await post(`${url}/endpoint/b9so-echo`, headers, { connections: 10, amount: 200 }); // warm
    for (let i = 0; i < ROUNDS; i++) {
      for (const [name, url] of Object.entries(targets)) endpoint[name].push((await post(`${url}/endpoint/b9so-echo`, headers, { connections: 10, duration: DURATION })).rps);
    }
  } finally {
    await forwardProxy?.stop();
    await haproxy?.stop();
    for (const c of clients) await c.end().catch(() => {});
    for (const p of procs.reverse()) await stopProc(p);
    await postgres?.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const rate = (ms) => (TASKS * 1000) / ms;
  const t = Object.fromEntries(Object.entries(tasks).map(([k, v]) => [k, rate(median(v))]));
  const cpu = Object.fromEntries(Object.entries(cpuMs).map(([k, rounds]) => [k, rounds[0].map((_, i) => median(rounds.map((r) => r[i])))]));
  const e = Object.fromEntries(Object.entries(endpoint).map(([k, v]) => [k, median(v)]));
  const ratios = {
    pgVsSqlite: t.pg / t.sqlite, threeVsOne: t.pg3 / t.pg,
    haproxyVsDirect: e.haproxy / e.direct, forwardedVsDirect: e.forwarded / e.direct,
  };
  return {
    name: "scale-out", tasks: TASKS, rounds: ROUNDS, tasksPerSecond: t, cpuMsPerTaskPerGateway: cpu, endpointRps: e, ratios,
    print() {
      console.log(`\n## scale-out: several gateways on Postgres (${TASKS} no-op tasks, ${IN_FLIGHT} in flight; medians of ${ROUNDS} alternating rounds)`);
      console.log(`tasks/s: sqlite ${fmt(t.sqlite)}, pg ${fmt(t.pg)} (${fmt(ratios.pgVsSqlite, 2)}× sqlite), 3 gateways on pg ${fmt(t.pg3)} (${fmt(ratios.threeVsOne, 2)}× one on pg)`);
      console.log(`gateway CPU-ms per task: sqlite ${cpu.sqlite.map((x) => fmt(x, 3)).join(", ")}; pg ${cpu.pg.map((x) => fmt(x, 3)).join(", ")}; ` +
        `3 gateways ${cpu.pg3.map((x) => fmt(x, 3)).join(", ")} (sum ${fmt(cpu.pg3.reduce((a, b) => a + b, 0), 3)})`);
      console.log(`endpoint c=10 req/s: direct ${fmt(e.direct)}, HAProxy over 3 (2 of 3 forwarded) ${fmt(e.haproxy)} (${fmt(ratios.haproxyVsDirect, 2)}×), ` +
        `every call forwarded ${fmt(e.forwarded)} (${fmt(ratios.forwardedVsDirect, 2)}×)`);
    },
  };
}

async function freePort() {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}
