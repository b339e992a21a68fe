/**
 * `beta9 gateway --store postgres://…` end to end: real gateway processes on one Postgres
 * database (a server this file starts) serve the same deployments and task queue; workers and
 * machines move between them; work put through a gateway with no worker runs on one that has one;
 * an unreachable database ends the start with STORE_UNAVAILABLE and exit code 5 instead of a hang.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "@beta9/gateway/testing/postgres";
import { pino } from "pino";
import { ensureSelfSignedCertificate, readTlsFiles, startGateway } from "@beta9/gateway";
import { startWorker } from "@beta9/worker";
import { WebSocket } from "ws";
import { EXIT } from "./errors.js";
import { AGENT_MAIN as agentMain, CLI as cli, call, freePort, Processes, stop } from "./testing/processes.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-store-e2e-"));
const procs = new Processes(dir);
const { env, children } = procs;
let postgres: TestPostgres | undefined;
after(async () => {
  await procs.stopAll();
  await postgres?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `beta9 gateway` to its exit: `{ code, output }`. */
function runToExit(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  return procs.run(["gateway", "--port", "0", "--log-level", "error", ...args], { ...env, ...extraEnv });
}

const startGatewayProcess = (args: string[]) => procs.gateway(args);

test("an unreachable Postgres store: exit 5 with STORE_UNAVAILABLE, the password never shown; a bad --store is a usage error", async () => {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve)); // now nothing listens there
  const refused = await runToExit(["--data-dir", join(dir, "refused"), "--store", `postgres://beta9:hunter2@127.0.0.1:${port}/beta9`]);
  assert.equal(refused.code, EXIT.unreachable, refused.output);
  assert.match(refused.output, /error: STORE_UNAVAILABLE: cannot connect to the Postgres store postgres:\/\/beta9:\*\*\*@127\.0\.0\.1:\d+\/beta9: .*ECONNREFUSED/);
  assert.doesNotMatch(refused.output, /hunter2/);

  const fromEnv = await runToExit(["--data-dir", join(dir, "env")], { BETA9_STORE: "mysql://somewhere/db" });
  assert.equal(fromEnv.code, EXIT.usage, fromEnv.output);
  assert.match(fromEnv.output, /BETA9_STORE.*must be sqlite or a postgres:\/\//);
});

const skip = postgresUnavailableReason();
test("two `beta9 gateway --store postgres://…` processes share deployments and a task queue", { skip }, async () => {
  postgres = await startTestPostgres();
  const store = await postgres.createDatabase();
  const first = await startGatewayProcess(["--data-dir", join(dir, "gw1"), "--store", store]);
  const exits: (number | null)[] = [];
  try {
    const key = /admin token: (\S+)/.exec(first.output())?.[1];
    assert.ok(key, first.output());
    // Printed right after the URL line, which may have come in a chunk of its own.
    for (let i = 0; i < 200 && !/^store: /m.test(first.output()); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(first.output(), /^store: postgres:\/\/beta9@\/t0\?host=/m);
    const listed = await call(first.url, key, "GET", "/api/v1/deployment");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.json.items, []);
    const stub = (await call(first.url, key, "POST", "/api/v1/stub", { name: "jobs", type: "taskqueue/deployment", config: { handler: "main.js:jobs" } })).json.stub;
    const deployment = await call(first.url, key, "POST", "/api/v1/deployment", { stubId: stub.id });
    assert.equal(deployment.status, 201, JSON.stringify(deployment.json));
    const put = await call(first.url, key, "POST", "/taskqueue/jobs", { n: 1 });
    assert.equal(put.status, 200, JSON.stringify(put.json));

    // A second gateway (its own data dir) on the same database: no second bootstrap, the same state.
    const second = await startGatewayProcess(["--data-dir", join(dir, "gw2"), "--store", store]);
    try {
      assert.doesNotMatch(second.output(), /admin token/);
      const seen = (await call(second.url, key, "GET", "/api/v1/deployment")).json.items;
      assert.deepEqual(seen.map((d: { id: string; version: number }) => [d.id, d.version]), [[deployment.json.id, 1]]);
      const task = (await call(second.url, key, "GET", `/api/v1/task/${put.json.task_id}`)).json;
      assert.deepEqual([task.status, task.stubId], ["PENDING", stub.id]);
      const putThere = await call(second.url, key, "POST", "/taskqueue/jobs", { n: 2 });
      assert.equal(putThere.status, 200, JSON.stringify(putThere.json));
      const tasks = (await call(first.url, key, "GET", "/api/v1/task")).json.items;
      assert.deepEqual(new Set(tasks.map((t: { id: string }) => t.id)), new Set([put.json.task_id, putThere.json.task_id]));
    } finally {
      exits.push(await stop(second.child));
    }
  } finally {
    exits.push(await stop(first.child));
  }
  assert.deepEqual(exits, [0, 0], "both stop cleanly, their database connections closed");
});

test("a gateway whose Postgres goes away answers 503 STORE_UNAVAILABLE (accepting nothing), stays up, and recovers by itself", { skip }, async () => {
  postgres ??= await startTestPostgres();
  const store = await postgres.createDatabase();
  const gw = await startGatewayProcess(["--data-dir", join(dir, "lost"), "--store", store]);
  try {
    const key = /admin token: (\S+)/.exec(gw.output())?.[1];
    assert.ok(key, gw.output());
    const stub = (await call(gw.url, key, "POST", "/api/v1/stub", { name: "jobs", type: "taskqueue/deployment", config: { handler: "main.js:jobs" } })).json.stub;
    assert.equal((await call(gw.url, key, "POST", "/api/v1/deployment", { stubId: stub.id })).status, 201);
    const before = await call(gw.url, key, "POST", "/taskqueue/jobs", { n: 1 });
    assert.equal(before.status, 200, JSON.stringify(before.json));

    await postgres.pause();
    for (const [method, path, body] of [["GET", "/api/v1/deployment"], ["POST", "/taskqueue/jobs", { n: 2 }], ["GET", `/api/v1/task/${before.json.task_id}`]] as const) {
      const res = await fetch(gw.url + path, {
        method, headers: { authorization: `Bearer ${key}`, ...(body && { "content-type": "application/json" }) }, ...(body && { body: JSON.stringify(body) }),
      });
      const json = await res.json() as { error: { code: string; message: string } };
      assert.equal(res.status, 503, `${method} ${path}: ${JSON.stringify(json)}`);
      assert.equal(json.error.code, "STORE_UNAVAILABLE");
      assert.match(json.error.message, /cannot reach its database now .*try again shortly/);
      assert.equal(res.headers.get("retry-after"), "2");
    }
    // Its background work (dispatch, schedules, sandboxes' reaper…) meets the same loss meanwhile.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(gw.child.exitCode, null, `the gateway is still running:\n${gw.output()}`);

    await postgres.resume();
    let listed: { status: number; json: any } | undefined;
    for (let i = 0; i < 300 && listed?.status !== 200; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      listed = await call(gw.url, key, "GET", "/api/v1/deployment");
    }
    assert.equal(listed?.status, 200, JSON.stringify(listed?.json));
    const after = await call(gw.url, key, "POST", "/taskqueue/jobs", { n: 3 });
    assert.equal(after.status, 200, JSON.stringify(after.json));
    const tasks = (await call(gw.url, key, "GET", "/api/v1/task")).json.items.map((t: { id: string }) => t.id);
    assert.deepEqual(new Set(tasks), new Set([before.json.task_id, after.json.task_id]), "the refused put left no task");
  } finally {
    assert.equal(await stop(gw.child), 0, gw.output());
  }
});

test("a worker and a b9agent machine given two gateways move to the live one within 10 s when theirs is killed (-9); it adopts their running containers", { skip }, async (t) => {
  postgres ??= await startTestPostgres();
  const store = await postgres.createDatabase();
  const a = await startGatewayProcess(["--data-dir", join(dir, "fa"), "--store", store]);
  const b = await startGatewayProcess(["--data-dir", join(dir, "fb"), "--store", store]);
  const key = /admin token: (\S+)/.exec(a.output())?.[1];
  assert.ok(key, a.output());
  const workerKey = (await call(a.url, key, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  // The CLI's --gateway list, in a process of its own; the process runtime needs no root (trusted code only).
  const worker = spawn(process.execPath, [
    cli, "worker", "--gateway", `${a.url},${b.url}`, "--token", workerKey, "--runtime", "process", "--allow-unisolated",
    "--state-dir", join(dir, "fo-worker"), "--id", "fo-worker", "--log-format", "json",
  ], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(worker);
  let workerOutput = "";
  worker.stdout!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  worker.stderr!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  const until = async (what: string, check: () => Promise<boolean>, ms = 15_000): Promise<number> => {
    const t0 = Date.now();
    while (!(await check().catch(() => false))) {
      if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms\nworker:\n${workerOutput}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return Date.now() - t0;
  };
  const workersOf = async (url: string) => ((await call(url, key, "GET", "/api/v1/worker")).json.items as { id: string; connected: boolean }[]).filter((w) => w.connected).map((w) => w.id);
  // A machine the same way: `b9agent init --gateway A,B`, its keepalives and its worker.
  // In a pool of its own: the containers below must land on the plain worker.
  assert.equal((await call(a.url, key, "POST", "/api/v1/pool", { name: "fo-machines" })).status, 201);
  const machine = (await call(a.url, key, "POST", "/api/v1/machine", { pool: "fo-machines" })).json;
  const agentEnv = { ...env, B9AGENT_HOME: join(dir, "fo-agent") };
  const agentCli = (args: string[]) => new Promise<number | null>((resolve) => spawn(process.execPath, [agentMain, ...args], { env: agentEnv, stdio: "ignore" }).once("exit", resolve));
  assert.equal(await agentCli(["init", "--gateway", `${a.url.replace("http://", "")},${b.url.replace("http://", "")}`, "--token", machine.token, "--pool", "fo-machines", "--metrics-port", "0"]), 0);
  for (const [k, v] of [["runtime", "process"], ["allowUnisolated", "true"], ["keepaliveIntervalSeconds", "1"], ["worker.name", "foagent"]] as const) {
    assert.equal(await agentCli(["config", "set", k, v]), 0, `config set ${k}`);
  }
  const agent = spawn(process.execPath, [agentMain, "run", "--no-tui"], { env: agentEnv, stdio: ["ignore", "pipe", "pipe"] });
  children.push(agent);
  agent.stdout!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  agent.stderr!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  const machineOn = async (url: string) => {
    const m = (await call(url, key, "GET", `/api/v1/machine/${machine.machine.id}`)).json;
    return m.state === "ready" && m.workerConnected === true;
  };
  try {
    await until("the worker's banner naming both gateways", async () => workerOutput.includes(`dialling ${a.url}, ${b.url}`));
    await until("the worker on gateway A", async () => (await workersOf(a.url)).includes("fo-worker"));
    await until("the machine ready on gateway A", () => machineOn(a.url));
    assert.deepEqual(await workersOf(b.url), [], "one connection at a time: the first gateway's");
    const run = await call(a.url, key, "POST", "/api/v1/container", { command: ["sleep", "120"] });
    assert.equal(run.status, 201, JSON.stringify(run.json));
    await until("the container running", async () => (await call(a.url, key, "GET", `/api/v1/container/${run.json.id}`)).json.state === "RUNNING");

    a.child.kill("SIGKILL");
    const movedMs = await until("the worker on gateway B", async () => (await workersOf(b.url)).includes("fo-worker"), 10_000);
    const machineMs = await until("the machine's worker on gateway B", () => machineOn(b.url), 10_000);
    t.diagnostic(`on gateway B after gateway A was killed: the worker in ${movedMs} ms, the machine in ${machineMs} ms more`);
    const adopted = (await call(b.url, key, "GET", `/api/v1/container/${run.json.id}`)).json;
    assert.deepEqual([adopted.state, adopted.workerId], ["RUNNING", "fo-worker"], "B knows the container from the worker's hello; nothing restarted it");
    // And B places new work on it.
    const second = await call(b.url, key, "POST", "/api/v1/container", { command: ["sleep", "120"] });
    assert.equal(second.status, 201, JSON.stringify(second.json));
    await until("a container placed by B running", async () => (await call(b.url, key, "GET", `/api/v1/container/${second.json.id}`)).json.state === "RUNNING");
  } finally {
    // SIGTERM stops their containers; a worker or agent that hangs is killed after 20 s.
    const codes = await Promise.all([stop(worker), stop(agent)]);
    await stop(b.child);
    assert.deepEqual(codes, [0, 0], workerOutput);
  }
});

test("a worker on a standby gateway goes back to the first one once it answers again", { skip }, async () => {
  postgres ??= await startTestPostgres();
  const store = await postgres.createDatabase();
  const port = await freePort();
  let a = await startGateway({ dataDir: join(dir, "ra"), port, store, logLevel: "silent" });
  const b = await startGateway({ dataDir: join(dir, "rb"), port: 0, store, logLevel: "silent" });
  const key = a.bootstrap!.token.key;
  const workerKey = await a.localWorkerToken();
  const started = await startWorker({
    gatewayUrl: [a.url, b.url], token: workerKey, runtime: "process", allowUnisolated: true, stateDir: join(dir, "rw"), workerId: "rw",
    logger: pino({ level: "silent" }), primaryCheckMs: 200,
  });
  const on = async (gw: { url: string }) => ((await call(gw.url, key, "GET", "/api/v1/worker")).json.items as { id: string; connected: boolean }[]).some((w) => w.id === "rw" && w.connected);
  const until = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; !(await check()); i++) {
      if (i > 300) throw new Error(`${what}: not within 15 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    await started.connected;
    await until("on A", () => on(a));
    await a.close();
    await until("on B once A stopped", () => on(b));
    a = await startGateway({ dataDir: join(dir, "ra"), port, store, logLevel: "silent" });
    await until("back on A once it answers", () => on(a));
    await until("gone from B", async () => !(await on(b)));
  } finally {
    await started.close(2000);
    await a.close();
    await b.close();
  }
});

test("with --objects shared: an image build, code, tasks, function and endpoint calls, a web app and a WebSocket through a gateway with no worker all run on the gateway that has one (tasks once each)", { skip }, async () => {
  postgres ??= await startTestPostgres();
  const store = await postgres.createDatabase();
  const objects = join(dir, "q-objects");
  const a = await startGatewayProcess(["--data-dir", join(dir, "qa"), "--store", store, "--objects", objects]);
  const b = await startGatewayProcess(["--data-dir", join(dir, "qb"), "--store", store, "--objects", objects]);
  for (let i = 0; i < 200 && !b.output().includes(`objects: ${objects}\n`); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(b.output().includes(`objects: ${objects}\n`), b.output());
  const key = /admin token: (\S+)/.exec(a.output())?.[1];
  assert.ok(key, a.output());
  const workerKey = (await call(a.url, key, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const worker = spawn(process.execPath, [
    cli, "worker", "--gateway", a.url, "--token", workerKey, "--runtime", "process", "--allow-unisolated", "--state-dir", join(dir, "qw"), "--id", "qw",
  ], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(worker);
  let workerOutput = "";
  worker.stdout!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  worker.stderr!.on("data", (c: Buffer) => (workerOutput += c.toString()));
  const ran = join(dir, "q-ran.txt");
  const app = join(dir, "q-app.ts");
  const writeApp = (version: string) => writeFileSync(app, `
    import { appendFileSync } from "node:fs";
    export const jobs = {
      __beta9Workload: true as const, kind: "taskqueue" as const, name: "q-jobs",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30, maxPendingTasks: 10 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (input: { n: number }) => {
        appendFileSync(${JSON.stringify(ran)}, "${version} " + input.n + "\\n");
        return { n: input.n };
      },
    };
    export const square = {
      __beta9Workload: true as const, kind: "function" as const, name: "q-square",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (input: { n: number }) => ({ squared: input.n * input.n, version: "${version}" }),
    };
    export const hold = {
      __beta9Workload: true as const, kind: "taskqueue" as const, name: "q-hold",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (input: { n: number }, ctx: { signal: AbortSignal }) => {
        appendFileSync(${JSON.stringify(ran)}, "holding " + input.n + "\\n");
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        appendFileSync(${JSON.stringify(ran)}, "aborted " + input.n + "\\n");
      },
    };
    export const site = {
      __beta9Workload: true as const, kind: "endpoint" as const, name: "q-site",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30, webApp: true, concurrentRequests: 4 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (request: Request) => new Response(JSON.stringify({
        method: request.method, url: new URL(request.url).pathname + new URL(request.url).search, body: await request.text(),
        host: request.headers.get("x-forwarded-host"), prefix: request.headers.get("x-forwarded-prefix"), token: request.headers.get("authorization"),
      }), { status: 201, headers: { "content-type": "application/json", "x-app": "${version}" } }),
    };
    export const chat = {
      __beta9Workload: true as const, kind: "endpoint" as const, name: "q-chat",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30, realtime: true, concurrentRequests: 4 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (socket: AsyncIterable<string> & { send(m: string): Promise<void>; close(code: number, reason: string): void }) => {
        for await (const m of socket) {
          if (m === "bye") return socket.close(4001, "A says bye");
          await socket.send("A: " + m);
        }
      },
    };
    export const echo = {
      __beta9Workload: true as const, kind: "endpoint" as const, name: "q-echo",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (input: { n: number }) => ({ echoed: input.n, pid: process.pid }),
    };
  `);
  const deploy = async (url: string, name = "jobs") => {
    const child = spawn(process.execPath, [cli, "deploy", `${app}:${name}`, "-q"], { env: { ...env, BETA9_GATEWAY: url, BETA9_TOKEN: key }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let output = "";
    child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    const code = await new Promise((resolve) => child.once("exit", (c) => resolve(c)));
    clearTimeout(timer);
    assert.equal(code, 0, output);
  };
  try {
    // Everything through B, which has no worker: v1's image build is offered to A, whose worker
    // builds it; v2 (new code, the same image) needs no build, and its bundle lands in the shared
    // objects dir, where A's worker finds it.
    writeApp("v1");
    await deploy(b.url);
    const images = (await call(b.url, key, "GET", "/api/v1/image")).json.items as { status: string }[];
    assert.deepEqual(images.map((i) => i.status), ["ready"]);
    writeApp("v2");
    await deploy(b.url);
    // Three bursts of maxPendingTasks (10) through B: B never ends these tasks (A does), so its
    // count of the queue must come down from the store for the next burst to be taken.
    const ids: string[] = [];
    let statuses: string[] = [];
    for (let burst = 0; burst < 3; burst++) {
      for (let n = burst * 10; n < burst * 10 + 10; n++) {
        let put = await call(b.url, key, "POST", "/taskqueue/q-jobs", { n });
        for (let i = 0; i < 100 && put.status === 429; i++) {
          await new Promise((r) => setTimeout(r, 100));
          put = await call(b.url, key, "POST", "/taskqueue/q-jobs", { n });
        }
        assert.equal(put.status, 200, JSON.stringify(put.json));
        ids.push(put.json.task_id);
      }
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        statuses = await Promise.all(ids.map(async (id) => (await call(b.url, key, "GET", `/api/v1/task/${id}`)).json.status as string));
        if (statuses.every((st) => st === "COMPLETE")) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(new Set(statuses), new Set(["COMPLETE"]), `burst ${burst}: ${statuses.join(",")}\nworker:\n${workerOutput}`);
    }
    const runs = readFileSync(ran, "utf8").trim().split("\n").filter((line) => line.startsWith("v")).sort((x, y) => Number(x.split(" ")[1]) - Number(y.split(" ")[1]));
    assert.deepEqual(runs, Array.from({ length: 30 }, (_, n) => `v2 ${n}`), "each task's handler ran exactly once, the code deployed through B");

    // A function called through B runs on A's worker; B answers when A ends the task.
    await deploy(b.url, "square");
    const answers = await Promise.all([3, 4, 5].map((n) => call(b.url, key, "POST", "/function/q-square", { n })));
    assert.deepEqual(answers.map((r) => [r.status, r.json]), [3, 4, 5].map((n) => [200, { squared: n * n, version: "v2" }]));

    // A task cancelled through B while A runs it: its handler sees ctx.signal abort on A.
    await deploy(b.url, "hold");
    const held = await call(b.url, key, "POST", "/taskqueue/q-hold", { n: 7 });
    assert.equal(held.status, 200, JSON.stringify(held.json));
    for (let i = 0; i < 300 && !readFileSync(ran, "utf8").includes("holding 7\n"); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await call(b.url, key, "POST", `/api/v1/task/${held.json.task_id}/cancel`)).json.status, "CANCELLED");
    for (let i = 0; i < 200 && !readFileSync(ran, "utf8").includes("aborted 7\n"); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(readFileSync(ran, "utf8").includes("aborted 7\n"), "the handler on A saw the cancel made through B");

    // An endpoint called through B is forwarded to A (the gateway B's store says has a worker).
    await deploy(b.url, "echo");
    const echoes = await Promise.all([1, 2].map(async (n) => {
      const res = await fetch(`${b.url}/endpoint/q-echo`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n }) });
      return { status: res.status, by: res.headers.get("x-beta9-forwarded-by"), task: res.headers.get("x-beta9-task-id"), json: await res.json() as { echoed: number } };
    }));
    assert.deepEqual(echoes.map((e) => [e.status, e.json.echoed, Boolean(e.by), Boolean(e.task)]), [[200, 1, true, true], [200, 2, true, true]]);

    // A web app's requests through B: method, path, query, a streamed body and the host the caller used reach the app on A.
    await deploy(b.url, "site");
    const body = "x".repeat(300_000);
    const page = await fetch(`${b.url}/endpoint/q-site/items/7?full=1`, { method: "PUT", headers: { authorization: `Bearer ${key}`, "content-type": "text/plain" }, body });
    const seen = await page.json() as Record<string, string | null>;
    assert.deepEqual([page.status, page.headers.get("x-app"), Boolean(page.headers.get("x-beta9-forwarded-by"))], [201, "v2", true]);
    assert.deepEqual(seen, { method: "PUT", url: "/items/7?full=1", body, host: new URL(b.url).host, prefix: "/endpoint/q-site", token: null },
      "the app sees the request as if B served it, and never the gateway token");

    // A realtime endpoint's WebSocket through B: upgraded on A, messages and the close code both ways.
    await deploy(b.url, "chat");
    const ws = new WebSocket(`${b.url.replace(/^http/, "ws")}/endpoint/q-chat`, { headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const next = () => new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
    ws.send("hello");
    assert.equal(await next(), "A: hello");
    const closed = new Promise<[number, string]>((resolve) => ws.once("close", (code, reason) => resolve([code, String(reason)])));
    ws.send("bye");
    assert.deepEqual(await closed, [4001, "A says bye"]);
    const refused = await new Promise<number>((resolve, reject) => {
      const anonymous = new WebSocket(`${b.url.replace(/^http/, "ws")}/endpoint/q-chat`);
      anonymous.once("unexpected-response", (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
      anonymous.once("open", () => reject(new Error("upgraded without a token")));
      anonymous.once("error", () => undefined);
    });
    assert.equal(refused, 401, "B checks the token before anything is forwarded");
  } finally {
    await stop(worker);
    await stop(b.child);
    await stop(a.child);
  }
});

test("TLS between gateways: a call forwarded to a peer that serves https with a self-signed certificate, trusted with --peer-ca", { skip }, async () => {
  postgres ??= await startTestPostgres();
  const store = await postgres.createDatabase();
  const objectsDir = join(dir, "tls-objects");
  const files = ensureSelfSignedCertificate(join(dir, "tls-a"), ["127.0.0.1", "localhost"]);
  const certificate = readTlsFiles(files);
  const a = await startGateway({ dataDir: join(dir, "ta"), port: 0, store, objectsDir, tls: certificate, logLevel: "silent" });
  assert.match(a.url, /^https:\/\//);
  const b = await startGatewayProcess(["--data-dir", join(dir, "tb"), "--store", store, "--objects", objectsDir, "--peer-ca", files.cert]);
  const key = a.bootstrap!.token.key;
  const worker = await startWorker({
    gatewayUrl: a.url, token: await a.localWorkerToken(), tlsCa: certificate.cert, runtime: "process", allowUnisolated: true,
    stateDir: join(dir, "tw"), workerId: "tw", logger: pino({ level: "silent" }),
  });
  try {
    await worker.connected;
    const app = join(dir, "tls-app.ts");
    writeFileSync(app, `export const echo = {
      __beta9Workload: true as const, kind: "endpoint" as const, name: "tls-echo",
      config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30 },
      image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      handler: async (input: { n: number }) => ({ echoed: input.n }),
    };`);
    const deployed = await procs.run(["deploy", `${app}:echo`, "-q"], { ...env, BETA9_GATEWAY: b.url, BETA9_TOKEN: key });
    assert.equal(deployed.code, 0, deployed.output);
    // B has no worker: it forwards over https to A, whose certificate only --peer-ca vouches for.
    const res = await fetch(`${b.url}/endpoint/tls-echo`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n: 5 }) });
    assert.deepEqual([res.status, await res.json(), Boolean(res.headers.get("x-beta9-forwarded-by"))], [200, { echoed: 5 }, true]);
    const bad = await procs.run(["gateway", "--data-dir", join(dir, "tc"), "--store", store, "--peer-ca", app]);
    assert.equal(bad.code, EXIT.usage, bad.output);
    assert.match(bad.output, /--peer-ca.*holds no PEM certificate/);
  } finally {
    await worker.close(2000);
    await stop(b.child);
    await a.close();
  }
});
