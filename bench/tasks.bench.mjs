// Task queues and functions, end to end on a local runc worker.
//
// 1. Task queue throughput: N (5000) puts of a no-op task (POST /taskqueue/<name>, 50 in flight, from
//    autocannon in a child process) → every task COMPLETE, on one warm container that runs 50 at
//    once. Time from the first put (its task's created_at) to the last COMPLETE (read from the
//    gateway's SQLite file every 5 ms), not gated on the load generator's exit. Against BullMQ in the same run: a local redis-server (`--save '' --appendonly
//    no`, on a free loopback port), N `queue.add` with 50 in flight, a Worker with concurrency 50
//    and a no-op processor, until N `completed` events. Alternating rounds, medians.
// 2. Fan-out: `fn.map` of 200 inputs, each handler sleeping 100 ms, maxContainers 10
//    (tasksPerContainer 1): wall time against the ideal 200 × 100 ms / 10 = 2 s. From zero
//    containers (cold) and again with the 10 warm.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { pino } from "pino";
import { Client } from "beta9";
import { startGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, median } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 5000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const IN_FLIGHT = 50;
const FAN = { inputs: 200, ms: 100, maxContainers: 10 };

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const sdk = here("../packages/sdk/dist/index.js");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const APP = `
import { fn, Image, QueueDepthAutoscaler, taskQueue } from ${JSON.stringify(sdk)};
export const noop = taskQueue({
  name: "b9noop", image: Image.scratch(), cpu: 1, memory: "256Mi", keepWarmSeconds: 3600, concurrentRequests: ${IN_FLIGHT},
  autoscaler: new QueueDepthAutoscaler({ maxContainers: 1, tasksPerContainer: ${IN_FLIGHT} }), maxPendingTasks: 1000000,
}, async () => null);
export const fan = fn({
  name: "b9fan", image: Image.scratch(), cpu: 0.1, memory: "128Mi", keepWarmSeconds: 3600,
  autoscaler: new QueueDepthAutoscaler({ maxContainers: ${FAN.maxContainers}, tasksPerContainer: 1 }),
}, async (input) => { await new Promise((r) => setTimeout(r, ${FAN.ms})); return input.i; });
`;

async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** `amount` POSTs from autocannon in a child process; resolves when all were answered 2xx. */
async function putAll(url, headers, amount) {
  const child = spawn(process.execPath, [here("./servers/post-load.mjs"), JSON.stringify({ url, headers, body: "{}", connections: IN_FLIGHT, amount })],
    { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const r = JSON.parse(line);
  if (r.non2xx > 0 || r.errors > 0 || r.requests !== amount) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.requests} requests`);
}

/** The BullMQ side; undefined (with the reason) when redis-server is not installed. */
async function bullmqRound(redisPort, amount, round) {
  const { Queue, Worker, QueueEvents } = await import("bullmq");
  const connection = { host: "127.0.0.1", port: redisPort, maxRetriesPerRequest: null };
  const name = `bench-${round}`;
  const queue = new Queue(name, { connection });
  let completed = 0;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const worker = new Worker(name, async () => null, { connection, concurrency: IN_FLIGHT, autorun: true });
  worker.on("completed", () => {
    completed += 1;
    if (completed === amount) resolveDone(performance.now());
  });
  await worker.waitUntilReady();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < amount) {
      next += 1;
      await queue.add("noop", {}, { removeOnComplete: true, removeOnFail: true });
    }
  }));
  const end = await done;
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  void QueueEvents;
  return end - t0;
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "tasks", skipped: unavailable, print() { console.log(`\n## tasks: skipped (${unavailable})`); } };
  let redisBin;
  try {
    redisBin = execFileSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).trim();
  } catch { /* absent */ }
  const dir = join(tmpdir(), "beta9-bench-tasks");
  if (existsSync(dir)) for (const entry of readdirSync(dir)) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const times = { subject: [], bullmq: [] };
  const putMs = [];
  const withLoadGen = [];
  const fan = {};
  let gateway, worker, client, redis, db;
  try {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
    const key = gateway.bootstrap.token.key;
    client = new Client({ gateway: gateway.url, token: key });
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), logger: pino({ level: "warn" }),
      runtime: "runc", name: "b9tq", subnet: "10.223.52.0/24", workerId: "bench-tasks",
    });
    await worker.connected;
    const appFile = join(dir, "app.mjs");
    writeFileSync(appFile, APP);
    const app = await import(appFile);
    // Deployed from code: the same path as `beta9 deploy`.
    await app.noop.deploy({ client });
    await app.fan.deploy({ client });
    db = new Database(join(dir, "gw", "gateway.db"), { readonly: true, fileMustExist: true });
    const stubOf = (name) => db.prepare("SELECT stub_id FROM deployment WHERE name = ? AND deleted_at IS NULL").get(name).stub_id;
    const noopStub = stubOf("b9noop");
    // Tasks of the stub not ended yet: an index range as long as the backlog, cheap to poll.
    const openCount = db.prepare("SELECT COUNT(*) AS n FROM task WHERE stub_id = ? AND status IN ('PENDING', 'RUNNING', 'RETRY')");
    const allCount = db.prepare("SELECT COUNT(*) AS n FROM task WHERE stub_id = ?");
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };

    if (redisBin && process.env.BENCH_BULLMQ !== "0") {
      const port = await freePort();
      redis = spawn(redisBin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
      for (let i = 0; ; i++) {
        try {
          execFileSync("redis-cli", ["-p", String(port), "ping"], { stdio: "ignore" });
          break;
        } catch {
          if (i > 200) throw new Error("redis-server did not answer");
          await sleep(20);
        }
      }
      redis.port = port;
    }

    // ---- 1. task queue throughput ----
    // The round runs from the first put's arrival (its task's created_at) to the moment every task of
    // the round is ended in the store. Not from spawning the load generator (a node process start,
    // ~0.2 s here) nor to its exit: autocannon with `amount` stops only on its next 1-s sample tick,
    // which rounded every round up to whole seconds. Both of those are still reported (`withLoadGen`).
    const putSpan = db.prepare("SELECT MIN(created_at) AS first, MAX(created_at) AS last FROM task WHERE stub_id = ? AND created_at >= ?");
    const subjectRound = async (amount) => {
      const before = allCount.get(noopStub).n;
      const since = new Date().toISOString();
      const t0 = performance.now();
      let failed;
      const putting = putAll(`${gateway.url}/taskqueue/b9noop`, headers, amount).catch((err) => (failed = err));
      let endWall;
      for (;;) {
        if (failed) throw failed;
        if (openCount.get(noopStub).n === 0 && allCount.get(noopStub).n - before === amount) {
          endWall = Date.now();
          break;
        }
        await sleep(5);
      }
      await putting;
      if (failed) throw failed;
      withLoadGen.push(performance.now() - t0);
      const span = putSpan.get(noopStub, since);
      const first = Date.parse(span.first);
      putMs.push(Date.parse(span.last) - first);
      return endWall - first;
    };
    await subjectRound(200); // warm: container up, JIT
    if (redis) await bullmqRound(redis.port, 200, "warm");
    for (let i = 0; i < ROUNDS; i++) {
      times.subject.push(await subjectRound(TASKS));
      if (redis) times.bullmq.push(await bullmqRound(redis.port, TASKS, i));
    }

    // ---- 2. fan-out ----
    const inputs = Array.from({ length: FAN.inputs }, (_, i) => ({ i }));
    const mapAll = async () => {
      const t0 = performance.now();
      const out = [];
      for await (const r of app.fan.map(inputs, { client, concurrency: FAN.inputs })) out.push(r);
      if (out.length !== FAN.inputs || out.some((r, i) => r !== i)) throw new Error("fn.map answered out of order or incompletely");
      return performance.now() - t0;
    };
    if (process.env.BENCH_FANOUT === "0") fan.coldMs = fan.warmMs = Number.NaN; // quick task-queue-only runs
    else {
      const coldSince = new Date().toISOString();
      fan.coldMs = await mapAll();
      if (process.env.BENCH_FANOUT_TIMELINE === "1") {
        printTimeline(db, stubOf("b9fan"), coldSince, (await client.listContainers({ active: true })).filter((c) => c.stubId === stubOf("b9fan")));
      }
      fan.warmMs = [await mapAll(), await mapAll()];
    }
    fan.containers = (await client.listContainers({ active: true })).filter((c) => c.stubId === stubOf("b9fan")).length;
  } finally {
    db?.close();
    if (redis) {
      const exited = new Promise((r) => redis.once("exit", r));
      redis.kill("SIGTERM");
      await exited;
    }
    if (client) {
      try {
        const left = await client.listContainers({ active: true });
        await Promise.all(left.map((c) => client.stopContainer(c.id).catch(() => {})));
        for (let i = 0; i < 300 && (await client.listContainers({ active: true })).length > 0; i++) await sleep(50);
      } catch { /* the worker's close stops what is left */ }
      await client.close();
    }
    await worker?.close(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const s = median(times.subject);
  const b = times.bullmq.length > 0 ? median(times.bullmq) : undefined;
  const rate = (ms) => (TASKS / ms) * 1000;
  const ideal = (FAN.inputs * FAN.ms) / FAN.maxContainers;
  const fanWarm = Array.isArray(fan.warmMs) ? median(fan.warmMs) : Number.NaN;
  return {
    name: `tasks: task queue throughput vs BullMQ, fn.map fan-out (runc worker)`,
    taskQueue: {
      tasks: TASKS, rounds: ROUNDS, inFlight: IN_FLIGHT, subjectMs: s, putsMs: putMs.slice(1), subjectPerS: rate(s), subjectAll: times.subject,
      withLoadGenMs: withLoadGen.slice(1),
      ...(b === undefined ? { bullmq: "skipped: install redis-server" } : { bullmqMs: b, bullmqPerS: rate(b), bullmqAll: times.bullmq, ratio: rate(s) / rate(b) }),
      goal: ">= 0.5 of BullMQ",
    },
    fanOut: { ...FAN, idealMs: ideal, coldMs: fan.coldMs, warmMs: fanWarm, warmAll: fan.warmMs, coldRatio: ideal / fan.coldMs, warmRatio: ideal / fanWarm, containers: fan.containers },
    print() {
      console.log(`\n## ${this.name}`);
      console.log(`  task queue: ${TASKS} no-op tasks, ${IN_FLIGHT} puts in flight, put → COMPLETE (${ROUNDS} alternating rounds, medians)`);
      console.log(`    subject beta9 /taskqueue → runner    ${fmt(rate(s)).padStart(6)} tasks/s   (${fmt(s)} ms; all ${times.subject.map((x) => fmt(x)).join(", ")}; the puts alone took ${putMs.slice(1).map((x) => fmt(x)).join(", ")} ms)`);
      console.log(`      (from spawning the load generator to its exit: ${withLoadGen.slice(1).map((x) => fmt(x)).join(", ")} ms, the measure before 2026-11-27)`);
      if (b === undefined) console.log("    floor   BullMQ: skipped: install redis-server");
      else {
        console.log(`    floor   BullMQ on redis-server       ${fmt(rate(b)).padStart(6)} tasks/s   (${fmt(b)} ms; all ${times.bullmq.map((x) => fmt(x)).join(", ")})`);
        console.log(`    ratio ${fmt(rate(s) / rate(b), 2)} (goal >= 0.5)`);
      }
      console.log(`  fan-out: fn.map of ${FAN.inputs} inputs × ${FAN.ms} ms, maxContainers ${FAN.maxContainers}: ideal ${fmt(ideal)} ms`);
      console.log(`    from zero containers ${fmt(fan.coldMs).padStart(6)} ms   (ideal/actual ${fmt(ideal / fan.coldMs, 2)})`);
      console.log(`    warm (${fan.containers} containers)    ${fmt(fanWarm).padStart(6)} ms   (ideal/actual ${fmt(ideal / fanWarm, 2)}; runs ${[fan.warmMs].flat().map((x) => fmt(x)).join(", ")})`);
    },
  };
}

/**
 * Where a fan-out from zero spends its time (BENCH_FANOUT_TIMELINE=1): per container, when its
 * first task started and how its tasks followed, from the tasks' own times in the store.
 */
function printTimeline(db, stubId, since, containers) {
  const rows = db.prepare("SELECT created_at, started_at, ended_at, container_id FROM task WHERE stub_id = ? AND created_at >= ? ORDER BY started_at").all(stubId, since);
  const t0 = Math.min(...rows.map((r) => Date.parse(r.created_at)));
  const at = (iso) => Date.parse(iso) - t0;
  console.log(`  fan-out timeline (ms from the first put): ${rows.length} tasks, last put ${Math.max(...rows.map((r) => at(r.created_at)))}, last end ${Math.max(...rows.map((r) => at(r.ended_at)))}`);
  for (const c of containers) console.log(`    container ${c.id.slice(0, 8)}: created ${Date.parse(c.createdAt) - t0}, RUNNING ${c.startedAt ? Date.parse(c.startedAt) - t0 : "-"}`);
  const byContainer = new Map();
  for (const r of rows) byContainer.set(r.container_id, [...(byContainer.get(r.container_id) ?? []), r]);
  for (const [id, tasks] of [...byContainer].sort((a, b) => at(a[1][0].started_at) - at(b[1][0].started_at))) {
    const gaps = tasks.slice(1).map((t, i) => at(t.started_at) - at(tasks[i].ended_at));
    console.log(`    ${String(id).slice(0, 8)}: ${tasks.length} tasks, first start ${at(tasks[0].started_at)}, last end ${at(tasks.at(-1).ended_at)}, ` +
      `run ${Math.round(tasks.reduce((n, t) => n + at(t.ended_at) - at(t.started_at), 0) / tasks.length)} ms each, gap between tasks median ${gaps.sort((a, b) => a - b)[gaps.length >> 1] ?? 0} max ${Math.max(0, ...gaps)}`);
  }
}
