/**
 * The documented scale-out layout, for real: three `beta9 gateway` processes on one Postgres store
 * and one shared objects dir behind Debian's HAProxy with the repo's sample config
 * (deploy/haproxy/haproxy.cfg), one worker dialling the load balancer. Deploys, endpoint calls,
 * task puts and function calls all go through HAProxy, landing on any gateway; then a gateway
 * without the worker and then the worker's own gateway are killed with -9, and the work goes on.
 * A schedule every 2 s runs the whole time: each tick fires once across the three cron runners.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "@beta9/gateway/testing/postgres";
import { haproxyUnavailableReason, startHaproxy } from "./testing/haproxy.js";
import { call, CLI, freePort, Processes, stop, until, type GatewayProcess } from "./testing/processes.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-haproxy-e2e-"));
const procs = new Processes(dir);
let postgres: TestPostgres | undefined;
let haproxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
after(async () => {
  await haproxy?.stop();
  await procs.stopAll();
  await postgres?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ran = join(dir, "ran.txt");
const ticked = join(dir, "ticked.txt");
const APP = `
  import { appendFileSync } from "node:fs";
  const small = { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 60 };
  const image = { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) };
  export const echo = { __beta9Workload: true as const, kind: "endpoint" as const, name: "lb-echo", config: small, image,
    handler: async (input: { n: number }) => ({ echoed: input.n }) };
  export const jobs = { __beta9Workload: true as const, kind: "taskqueue" as const, name: "lb-jobs", config: small, image,
    handler: async (input: { n: number }) => { appendFileSync(${JSON.stringify(ran)}, input.n + "\\n"); return input.n; } };
  export const tick = { __beta9Workload: true as const, kind: "schedule" as const, name: "lb-tick", image,
    config: { ...small, when: "*/2 * * * * *" },
    handler: async (input: { scheduledAt: string }) => { appendFileSync(${JSON.stringify(ticked)}, input.scheduledAt + "\\n"); } };
  export const square = { __beta9Workload: true as const, kind: "function" as const, name: "lb-square", config: small, image,
    handler: async (input: { n: number }) => input.n * input.n };
`;

test("three gateways behind HAProxy: deploys, endpoints, tasks and functions through any of them; two killed with -9, the work goes on", {
  skip: postgresUnavailableReason() ?? haproxyUnavailableReason(), timeout: 300_000,
}, async (t) => {
  postgres = await startTestPostgres();
  const store = await postgres.createDatabase();
  const objects = join(dir, "objects");
  const gateways: GatewayProcess[] = [];
  for (const n of [1, 2, 3]) gateways.push(await procs.gateway(["--data-dir", join(dir, `gw${n}`), "--store", store, "--objects", objects]));
  const key = /admin token: (\S+)/.exec(gateways[0]!.output())?.[1];
  assert.ok(key, gateways[0]!.output());
  haproxy = await startHaproxy(dir, await freePort(), gateways.map((g) => g.url.replace("http://", "")));
  const lb = haproxy.url;

  const workerKey = (await call(lb, key, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const worker = procs.spawn(CLI, [
    "worker", "--gateway", lb, "--token", workerKey, "--runtime", "process", "--allow-unisolated", "--state-dir", join(dir, "worker"), "--id", "lb-worker",
  ]);
  const holder = async (): Promise<GatewayProcess | undefined> => {
    for (const g of gateways) {
      if (g.child.exitCode !== null || g.child.signalCode !== null) continue;
      const workers = (await call(g.url, key, "GET", "/api/v1/worker").catch(() => ({ json: { items: [] } }))).json.items as { id: string; connected: boolean }[];
      if (workers.some((w) => w.id === "lb-worker" && w.connected)) return g;
    }
    return undefined;
  };
  await until("the worker connected through HAProxy", async () => (await holder()) !== undefined, 15_000, worker.output);

  const app = join(dir, "app.ts");
  writeFileSync(app, APP);
  for (const name of ["echo", "jobs", "square", "tick"]) {
    const deployed = await procs.run(["deploy", `${app}:${name}`, "-q"], { ...procs.env, BETA9_GATEWAY: lb, BETA9_TOKEN: key });
    assert.equal(deployed.code, 0, deployed.output);
  }

  let forwarded = 0;
  const echoes = async (count: number) => {
    for (let n = 0; n < count; n++) {
      const res = await fetch(`${lb}/endpoint/lb-echo`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n }) });
      assert.deepEqual([res.status, await res.json()], [200, { echoed: n }]);
      if (res.headers.get("x-beta9-forwarded-by")) forwarded += 1;
    }
  };
  const tasks = async (from: number, count: number) => {
    const ids: string[] = [];
    for (let n = from; n < from + count; n++) {
      const put = await call(lb, key, "POST", "/taskqueue/lb-jobs", { n });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      ids.push(put.json.task_id);
    }
    await until("the tasks complete", async () => {
      const statuses = await Promise.all(ids.map(async (id) => (await call(lb, key, "GET", `/api/v1/task/${id}`)).json.status));
      return statuses.every((s) => s === "COMPLETE");
    }, 60_000, worker.output);
  };
  const squares = async () => {
    const answers = await Promise.all([2, 3].map(async (n) => {
      const res = await fetch(`${lb}/function/lb-square`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n }) });
      const text = await res.text();
      return { status: res.status, body: res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text };
    }));
    assert.deepEqual(answers.map((a) => [a.status, a.body]), [[200, 4], [200, 9]],
      `${JSON.stringify(answers)}\nhaproxy: ${haproxy?.output().slice(-2000)}\n${gateways.map((g) => g.output().slice(-3000)).join("\n---\n")}`);
  };

  await echoes(9);
  assert.ok(forwarded >= 3, `round robin sends calls to the gateways without the worker, which forward them (${forwarded} of 9)`);
  await tasks(0, 12);
  await squares();

  // A gateway without the worker dies: HAProxy stops sending to it (a refused connection is sent elsewhere at once).
  const home = (await holder())!;
  const victim = gateways.find((g) => g !== home)!;
  victim.child.kill("SIGKILL");
  await echoes(6);
  await tasks(12, 6);

  // The worker's own gateway dies: the worker comes back through HAProxy to a live gateway.
  home.child.kill("SIGKILL");
  const movedMs = await until("the worker on a live gateway", async () => {
    const now = await holder();
    return now !== undefined && now !== home;
  }, 10_000, worker.output);
  t.diagnostic(`the worker was back on a live gateway ${movedMs} ms after its gateway was killed`);
  await echoes(3);
  await tasks(18, 6);
  await squares();

  // The schedule, claimed by three gateways' cron runners the whole time: each 2 s tick fired once.
  // For a minute of ticks (the kills above included), then the last ticks' tasks end.
  const readTicks = () => (existsSync(ticked) ? readFileSync(ticked, "utf8").trim().split("\n").filter(Boolean).sort() : []);
  await until("a minute of ticks", () => {
    const first = readTicks()[0];
    return first !== undefined && Date.now() - Date.parse(first) > 62_000;
  }, 120_000, worker.output);
  await new Promise((r) => setTimeout(r, 3000));
  const ticks = readTicks();
  assert.deepEqual(ticks.filter((tick, i) => ticks.indexOf(tick) !== i), [], "no tick fired twice");
  const span = (Date.parse(ticks.at(-1)!) - Date.parse(ticks[0]!)) / 2000 + 1;
  t.diagnostic(`schedule */2 s: ${ticks.length} ticks fired over ${span} ticks of time, none twice`);
  assert.ok(ticks.length >= span * 0.8, `most ticks fired: ${ticks.length} of ${span}`);

  const runs = readFileSync(ran, "utf8").trim().split("\n").map(Number).sort((a, b) => a - b);
  assert.deepEqual(runs.filter((n, i) => runs.indexOf(n) === i), Array.from({ length: 24 }, (_, n) => n), "every acknowledged task ran");
  t.diagnostic(`task runs: ${runs.length} for 24 tasks (a task whose gateway died mid-run is retried: at least once)`);

  assert.equal(await stop(worker.child), 0, worker.output());
  for (const g of gateways) await stop(g.child);
});
