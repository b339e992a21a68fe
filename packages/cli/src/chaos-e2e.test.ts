/**
 * Chaos under load, the documented scale-out layout: three `beta9 gateway` processes on one
 * Postgres store behind Debian's HAProxy (the repo's sample config), two workers dialling the load
 * balancer. 5,000 tasks are put through HAProxy by 16 concurrent clients while
 *   - the gateway holding a worker is killed with -9,
 *   - another gateway is stopped and started again (same data dir, same port): the one holding a
 *     b9agent machine, unless the first held it (the workers and the machine must each be on a
 *     live gateway within 10 s),
 *   - Postgres is stopped and started again.
 * Every acknowledged task must end COMPLETE, and its handler must have run exactly once: each run
 * appends its task id to a file (a side effect, not the status). No task may run twice.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "@beta9/gateway/testing/postgres";
import { haproxyUnavailableReason, startHaproxy } from "./testing/haproxy.js";
import { AGENT_MAIN, call, CLI, freePort, Processes, stop, until, type GatewayProcess } from "./testing/processes.js";

const TASKS = Number(process.env.BETA9_CHAOS_TASKS ?? 5000);
const CLIENTS = 16;

const dir = mkdtempSync(join(tmpdir(), "beta9-chaos-e2e-"));
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
const APP = `
  import { appendFileSync } from "node:fs";
  const image = { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) };
  export const jobs = { __beta9Workload: true as const, kind: "taskqueue" as const, name: "chaos-jobs", image,
    config: { cpu: 0.25, memory: "128Mi", keepWarmSeconds: 300, concurrentRequests: 32, maxPendingTasks: 2000, pool: "default" },
    handler: async (input: { n: number }, ctx: { taskId: string; containerId: string; retries: number }) => {
      await new Promise((r) => setTimeout(r, input.n % 20));
      appendFileSync(${JSON.stringify(ran)}, ctx.taskId + " " + ctx.containerId + " " + ctx.retries + " " + new Date().toISOString() + "\\n");
      return input.n;
    } };
`;

test(`chaos: ${TASKS} tasks through HAProxy while a gateway is killed with -9, another restarted and Postgres restarted: every acknowledged task runs exactly once`, {
  skip: postgresUnavailableReason() ?? haproxyUnavailableReason(), timeout: 600_000,
}, async (t) => {
  postgres = await startTestPostgres();
  const store = await postgres.createDatabase();
  const objects = join(dir, "objects");
  const ports = [await freePort(), await freePort(), await freePort()];
  const gatewayArgs = (n: number) => ["--port", String(ports[n]), "--data-dir", join(dir, `gw${n}`), "--store", store, "--objects", objects];
  const gateways: GatewayProcess[] = [];
  for (const n of [0, 1, 2]) gateways.push(await procs.gateway(gatewayArgs(n)));
  const key = /admin token: (\S+)/.exec(gateways[0]!.output())?.[1];
  assert.ok(key, gateways[0]!.output());
  haproxy = await startHaproxy(dir, await freePort(), ports.map((p) => `127.0.0.1:${p}`));
  const lb = haproxy.url;

  const workerKey = (await call(lb, key, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const workers = ["w1", "w2"].map((id) => procs.spawn(CLI, [
    "worker", "--gateway", lb, "--token", workerKey, "--runtime", "process", "--allow-unisolated", "--state-dir", join(dir, id), "--id", id,
  ]));
  const alive = (g: GatewayProcess) => g.child.exitCode === null && g.child.signalCode === null;
  const holderOf = async (workerId: string): Promise<GatewayProcess | undefined> => {
    for (const g of gateways) {
      if (!alive(g)) continue;
      const listed = (await call(g.url, key, "GET", "/api/v1/worker").catch(() => ({ json: { items: [] } }))).json.items as { id: string; connected: boolean }[];
      if (listed.some((w) => w.id === workerId && w.connected)) return g;
    }
    return undefined;
  };
  // A b9agent machine too, in a pool of its own (the tasks' stub runs on the default pool), dialling HAProxy.
  assert.equal((await call(lb, key, "POST", "/api/v1/pool", { name: "chaos-edge" })).status, 201);
  const machine = (await call(lb, key, "POST", "/api/v1/machine", { pool: "chaos-edge" })).json;
  const agentEnv = { ...procs.env, B9AGENT_HOME: join(dir, "agent") };
  const agentCli = async (args: string[]) => (await procs.run(args, agentEnv, 30_000, AGENT_MAIN)).code;
  assert.equal(await agentCli(["init", "--gateway", lb.replace("http://", ""), "--token", machine.token, "--pool", "chaos-edge", "--metrics-port", "0"]), 0);
  for (const [k, v] of [["runtime", "process"], ["allowUnisolated", "true"], ["keepaliveIntervalSeconds", "1"], ["worker.name", "chaosag"]] as const) {
    assert.equal(await agentCli(["config", "set", k, v]), 0, `config set ${k}`);
  }
  const agent = procs.spawn(AGENT_MAIN, ["run", "--no-tui"], agentEnv);
  const machineOn = async (g: GatewayProcess) => {
    const m = (await call(g.url, key, "GET", `/api/v1/machine/${machine.machine.id}`).catch(() => ({ json: {} }))).json;
    return m.workerConnected === true;
  };
  const machineHolder = async () => {
    for (const g of gateways) if (alive(g) && (await machineOn(g))) return g;
    return undefined;
  };
  const output = () => [...workers, agent].map((w) => w.output()).join("\n") + gateways.map((g) => g.output()).join("\n");
  await until("both workers connected through HAProxy", async () => (await holderOf("w1")) !== undefined && (await holderOf("w2")) !== undefined, 20_000, output);
  await until("the machine connected through HAProxy", async () => (await machineHolder()) !== undefined, 20_000, output);

  const app = join(dir, "app.ts");
  writeFileSync(app, APP);
  const deployed = await procs.run(["deploy", `${app}:jobs`, "-q"], { ...procs.env, BETA9_GATEWAY: lb, BETA9_TOKEN: key });
  assert.equal(deployed.code, 0, deployed.output);

  // The clients: each put is retried until acknowledged (429 and 503 after Retry-After, a lost
  // connection at once). An acknowledged put is a 200 with the task's id.
  const acked: string[] = [];
  const refusals = new Map<string, number>();
  let next = 0;
  const putOne = async (n: number): Promise<void> => {
    for (;;) {
      let wait = 100;
      try {
        const res = await fetch(`${lb}/taskqueue/chaos-jobs`, {
          method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n }),
        });
        const body = await res.json().catch(() => ({})) as { task_id?: string; error?: { code?: string } };
        if (res.status === 200 && body.task_id) {
          acked.push(body.task_id);
          return;
        }
        const why = `${res.status} ${body.error?.code ?? ""}`;
        refusals.set(why, (refusals.get(why) ?? 0) + 1);
        assert.ok([429, 502, 503].includes(res.status), `a put may be refused for now, never for good: ${why}`);
        wait = Math.max(wait, Number(res.headers.get("retry-after") ?? 0) * 1000);
      } catch (err) {
        refusals.set("connection", (refusals.get("connection") ?? 0) + 1);
        if (err instanceof assert.AssertionError) throw err;
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  };
  const clients = Array.from({ length: CLIENTS }, async () => {
    while (next < TASKS) await putOne(next++);
  });

  // The chaos, at points of the load.
  const atAcked = (count: number) => until(`${count} puts acknowledged`, () => acked.length >= count, 120_000, output);
  const events: string[] = [];
  const chaos = (async () => {
    await atAcked(Math.floor(TASKS * 0.2));
    // The gateway holding w1 dies; the machine's gateway (if another) is the one restarted below.
    const victim = (await holderOf("w1"))!;
    const machineWasOn = (await machineHolder())!;
    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    events.push(`killed -9 the gateway holding w1 at ${acked.length} acknowledged`);
    await until("w1 on a live gateway", async () => {
      const now = await holderOf("w1");
      return now !== undefined && now !== victim;
    }, 10_000, output);
    t.diagnostic(`w1 was on a live gateway ${Date.now() - killedAt} ms after its gateway was killed`);
    const machineMoved = async (from: GatewayProcess, since: number, how: string) => {
      await until("the machine on a live gateway", async () => {
        const now = await machineHolder();
        return now !== undefined && now !== from;
      }, 10_000, output);
      t.diagnostic(`the b9agent machine was on a live gateway ${Date.now() - since} ms after its gateway was ${how}`);
    };
    if (machineWasOn === victim) await machineMoved(victim, killedAt, "killed");

    await atAcked(Math.floor(TASKS * 0.45));
    const restarted = machineWasOn !== victim ? gateways.indexOf(machineWasOn) : gateways.findIndex((g) => g !== victim && alive(g));
    const stopping = gateways[restarted]!;
    const stoppedAt = Date.now();
    await stop(stopping.child);
    if (machineWasOn === stopping) await machineMoved(stopping, stoppedAt, "stopped");
    gateways[restarted] = await procs.gateway(gatewayArgs(restarted));
    events.push(`restarted gateway ${restarted + 1} at ${acked.length} acknowledged`);

    await atAcked(Math.floor(TASKS * 0.7));
    await postgres!.pause();
    events.push(`stopped Postgres at ${acked.length} acknowledged`);
    await new Promise((r) => setTimeout(r, 2000));
    await postgres!.resume();
    events.push("started Postgres again");
  })();
  await Promise.all([...clients, chaos]);
  t.diagnostic(events.join("; "));
  t.diagnostic(`refusals while putting: ${JSON.stringify(Object.fromEntries(refusals))}`);
  assert.equal(acked.length, TASKS);

  const lines = () => (existsSync(ran) ? readFileSync(ran, "utf8").trim().split("\n").filter(Boolean) : []);
  const runs = () => lines().map((line) => line.split(" ")[0]!);
  const ackedIds = new Set(acked);
  const started = Date.now();
  await until("every acknowledged task ran", () => {
    const seen = new Set(runs());
    return acked.every((id) => seen.has(id));
  }, 240_000, () => `${runs().length} runs for ${TASKS} acknowledged\n${output().slice(-4000)}`);
  t.diagnostic(`the last acknowledged task ran ${Date.now() - started} ms after the last put`);

  // Every acknowledged task COMPLETE (through the load balancer), its result the handler's.
  const statuses = new Map<string, number>();
  let resumed = 0;
  for (let i = 0; i < acked.length; i += 50) {
    await Promise.all(acked.slice(i, i + 50).map(async (id) => {
      let task: { status?: string; retries?: number } | undefined;
      await until(`task ${id} COMPLETE`, async () => {
        task = (await call(lb, key, "GET", `/api/v1/task/${id}`)).json;
        return task?.status === "COMPLETE";
      }, 120_000, () => JSON.stringify(task));
      statuses.set(task!.status!, (statuses.get(task!.status!) ?? 0) + 1);
      if ((task!.retries ?? 0) > 0) resumed += 1;
    }));
  }
  assert.deepEqual(Object.fromEntries(statuses), { COMPLETE: TASKS });
  // Attempts the kill, the restart or the outage cut off were sent again (retries counts them), and still ran once.
  t.diagnostic(`${resumed} tasks had an attempt cut off`);
  assert.ok(resumed > 0, "the chaos cut attempts off");

  const all = runs();
  const counts = new Map<string, number>();
  for (const id of all) counts.set(id, (counts.get(id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1);
  for (const [id] of twice.slice(0, 5)) t.diagnostic(`ran twice: ${lines().filter((l) => l.startsWith(id)).join(" | ")} ${JSON.stringify((await call(lb, key, "GET", `/api/v1/task/${id}`)).json)}`);
  assert.deepEqual(twice, [], "no handler ran twice");
  assert.equal([...ackedIds].filter((id) => counts.get(id) === 1).length, TASKS, "every acknowledged task ran exactly once");
  t.diagnostic(`${all.length} runs: ${TASKS} acknowledged tasks once each, ${all.length - TASKS} unacknowledged puts (a gateway killed after committing) once each`);

  for (const w of [...workers, agent]) assert.equal(await stop(w.child), 0, w.output());
  for (const g of gateways) await stop(g.child);
});
