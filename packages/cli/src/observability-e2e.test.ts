/**
 * Observability end to end on real parts (gateway, a runc worker, the `beta9` CLI): an endpoint
 * and a task queue are deployed and called; /metrics then holds their per-workload series (calls
 * by status, latency, cold starts, queue depth, containers, task outcomes, placements, capacity
 * waits, failures) and the worker's capacity and reservations. After a gateway restart the
 * handlers' lines are found by deployment and by task (each line tagged by the runner with its
 * task), and `beta9 logs -f` prints new lines as they come. Skipped (with the reason) where runc
 * cannot run.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Client, type LogEntry } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-obs-e2e-"));
const children = new Set<ChildProcess>();
const hostBefore = captureHostState();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 90_000, context?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `\n${context()}` : ""}`);
    await sleep(50);
  }
}

/** Prometheus text: the value of the one series of `name` whose labels include `labels` (undefined when none). */
function series(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

const APP = `
import { endpoint, taskQueue, Image, QueueDepthAutoscaler } from ${JSON.stringify(sdk)};
const small = { image: Image.scratch(), cpu: 0.25, memory: "128Mi", keepWarmSeconds: 600 };
export const echo = endpoint({ name: "obs-echo", ...small }, async (input: { n: number }) => {
  console.log("echo " + input.n);
  return { n: input.n };
});
export const jobs = taskQueue({ name: "obs-jobs", ...small, autoscaler: new QueueDepthAutoscaler({ maxContainers: 1 }) }, async (input: { n: number; hold?: boolean }, ctx) => {
  console.log("job " + input.n + " started");
  if (input.hold) await new Promise((r) => ctx.signal.addEventListener("abort", r));
  console.error("job " + input.n + " done");
  return input.n;
});
`;

describe("observability end to end (gateway + runc worker + CLI)", { skip }, () => {
  const gwDir = join(dir, "gw");
  let port: number;
  let gateway: RunningGateway;
  let client: Client;
  let key: string;
  let worker: StartedWorker;
  const workerLog: string[] = [];
  /** Task ids of the endpoint calls (x-beta9-task-id) and of the queue's tasks, by n. */
  const calls = new Map<number, string>();
  const tasks = new Map<number, string>();

  const beta9 = (args: string[]) => {
    let text = "";
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.stdout!.on("data", (d) => (text += String(d)));
    child.stderr!.on("data", (d) => (text += String(d)));
    const exited = new Promise<number>((r) => child.once("exit", (code, signal) => {
      children.delete(child);
      r(code ?? (signal ? 128 : 1));
    }));
    return { child, out: () => text, exited };
  };
  const call = async (n: number) => {
    const res = await fetch(`${gateway.url}/endpoint/obs-echo`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n }) });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { n });
    calls.set(n, res.headers.get("x-beta9-task-id")!);
  };
  const scrape = async () => {
    const res = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    return res.text();
  };

  before(async () => {
    port = await freePort();
    gateway = await startGateway({ dataDir: gwDir, port, logLevel: "silent" });
    key = gateway.bootstrap!.token.key;
    client = new Client({ gateway: gateway.url, token: key });
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), runtime: "runc", name: "obs", subnet: "10.219.71.0/24",
      workerId: "obs-worker", capacity: { cpuMillicores: 4000, memoryMiB: 4096, gpus: [{ type: "A10G", count: 2 }] },
      logger: pino({ level: "warn" }, new Writable({ write(chunk, _e, done) { workerLog.push(String(chunk)); done(); } })),
    });
    await worker.connected;
    const root = join(dir, "app");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(root, "app.ts"), APP);
    for (const target of ["echo", "jobs"]) {
      const deployed = beta9(["deploy", `${join(root, "app.ts")}:${target}`, "-q"]);
      assert.equal(await deployed.exited, 0, deployed.out());
    }
  });

  after(async () => {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all([...children].map((c) => new Promise((r) => c.once("exit", r))));
    await client?.close();
    await worker?.close(2000);
    await gateway?.close();
  });

  test("/metrics after real calls: per-workload series with workspace, workload and kind labels, the scheduler's and the worker's", async () => {
    await call(1);
    await call(2);
    const held = await client.putTask("obs-jobs", { n: 1, hold: true });
    tasks.set(1, held.id);
    await until("the held task running", async () => ((await held.status()).status === "RUNNING" ? true : undefined));
    const queuedTasks = await Promise.all([2, 3].map((n) => client.putTask("obs-jobs", { n })));
    queuedTasks.forEach((t, i) => tasks.set(i + 2, t.id));
    const echo = { workspace: "default", workload: "obs-echo", kind: "endpoint/deployment" };
    const jobs = { workspace: "default", workload: "obs-jobs", kind: "taskqueue/deployment" };
    // The queue holds two tasks behind the one that runs (one container, one slot).
    const queued = await scrape();
    assert.equal(series(queued, "beta9_workload_queue_depth", jobs), 2, queued.split("\n").filter((l) => l.includes("queue_depth")).join("\n"));
    await client.cancelTask(held.id);
    assert.deepEqual(await Promise.all(queuedTasks.map((t) => t.result())), [2, 3]);

    // Capacity: 4 cores; 3 taken by one container, a second asking 2 waits until the first stops.
    const idle = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]; // ends at once on SIGTERM (PID 1 ignores it by default)
    const exited = (id: string) => until(`container ${id} exited`, async () => ((await client.getContainer(id)).state === "EXITED" ? true : undefined));
    const big = await client.runContainer({ command: idle, cpu: 3, memory: "64Mi" });
    await until("the big container running", async () => ((await client.getContainer(big.id)).state === "RUNNING" ? true : undefined));
    const waiting = await client.runContainer({ command: idle, cpu: 2, memory: "64Mi" });
    assert.match((await client.getContainer(waiting.id)).message ?? "", /waiting for capacity/);
    await client.stopContainer(big.id);
    await until("the waiting container placed", async () => ((await client.getContainer(waiting.id)).workerId ? true : undefined));
    await client.stopContainer(waiting.id);
    await Promise.all([exited(big.id), exited(waiting.id)]);
    const broken = await client.runContainer({ command: ["/no/such/program"], cpu: 0.1, memory: "32Mi" });
    const ended = await until("the broken container ended", async () => {
      const c = await client.getContainer(broken.id);
      return c.state === "EXITED" ? c : undefined;
    });

    const text = await scrape();
    const has = (name: string, labels: Record<string, string>) => {
      const value = series(text, name, labels);
      assert.ok(value !== undefined, `no ${name}${JSON.stringify(labels)} in:\n${text.split("\n").filter((l) => l.startsWith(name)).join("\n")}`);
      return value;
    };
    assert.equal(has("beta9_workload_requests_total", { ...echo, status: "200" }), 2);
    assert.equal(has("beta9_workload_request_duration_seconds_count", echo), 2);
    assert.ok(has("beta9_workload_request_duration_seconds_bucket", { ...echo, le: "+Inf" }) === 2);
    for (const w of [echo, jobs]) {
      assert.equal(has("beta9_workload_cold_starts_total", w), 1);
      assert.equal(has("beta9_workload_cold_start_duration_seconds_count", w), 1);
      assert.equal(has("beta9_workload_containers", { ...w, state: "RUNNING" }), 1);
      assert.ok(has("beta9_scheduler_placements_total", w) >= 1);
    }
    assert.equal(has("beta9_workload_tasks_total", { ...jobs, status: "COMPLETE" }), 2);
    assert.equal(has("beta9_workload_tasks_total", { ...jobs, status: "CANCELLED" }), 1);
    assert.equal(has("beta9_workload_task_duration_seconds_count", { ...jobs, status: "COMPLETE" }), 2);
    assert.equal(series(text, "beta9_workload_queue_depth", jobs), undefined, "nothing waits any more");
    const plain = { workspace: "default", workload: "", kind: "container" };
    assert.equal(has("beta9_scheduler_capacity_waits_total", plain), 1);
    assert.equal(has("beta9_scheduler_capacity_wait_seconds_count", plain), 1);
    assert.equal(has("beta9_scheduler_failures_total", { ...plain, reason: ended.reason! }), 1, `the broken container ended ${ended.reason}: ${ended.message}`);
    const w = { worker: "obs-worker", pool: "default" };
    assert.equal(has("beta9_worker_connected", w), 1);
    assert.equal(has("beta9_worker_cpu_capacity_cores", w), 4);
    assert.equal(has("beta9_worker_cpu_reserved_cores", w), 0.5, "the two workloads' containers");
    assert.equal(has("beta9_worker_memory_capacity_bytes", w), 4096 * 1024 * 1024);
    assert.equal(has("beta9_worker_memory_reserved_bytes", w), 256 * 1024 * 1024);
    assert.equal(has("beta9_worker_gpus", { ...w, gpu_type: "A10G" }), 2);
    assert.equal(has("beta9_worker_gpus_reserved", { ...w, gpu_type: "A10G" }), 0);
    assert.ok(has("beta9_worker_placements_total", { worker: "obs-worker" }) >= 5);
    assert.equal(has("beta9_containers", { state: "RUNNING" }), 2);
    assert.ok(has("beta9_logs_lines_total", {}) >= 6);
    assert.equal(has("beta9_logs_dropped_lines_total", {}), 0);
  });

  test("after a gateway restart, the handlers' lines are found by deployment and by task", async () => {
    await gateway.close();
    gateway = await startGateway({ dataDir: gwDir, port, logLevel: "silent" });
    await until("the worker back", async () => ((await client.listWorkers()).some((w) => w.id === "obs-worker" && w.connected) ? true : undefined), 90_000, () => workerLog.join(""));

    const byDeployment = beta9(["logs", "--deployment", "obs-echo"]);
    assert.equal(await byDeployment.exited, 0, byDeployment.out());
    assert.match(byDeployment.out(), /^[0-9a-f]{8} echo 1\n[0-9a-f]{8} echo 2\n/m);

    // An endpoint call's task id (from its x-beta9-task-id header): just its own line.
    const byCall = beta9(["logs", "--task", calls.get(2)!, "--json"]);
    assert.equal(await byCall.exited, 0, byCall.out());
    const callLines = byCall.out().trim().split("\n").map((l) => JSON.parse(l) as LogEntry);
    assert.deepEqual(callLines.map((e) => [e.line, e.taskId, e.stream]), [["echo 2", calls.get(2), "stdout"]]);

    // A queued task by a unique start of its id: its lines on both streams, and no other task's.
    const byTask = beta9(["logs", "--task", tasks.get(3)!.slice(0, 8), "--json"]);
    assert.equal(await byTask.exited, 0, byTask.out());
    const taskLines = byTask.out().trim().split("\n").map((l) => JSON.parse(l) as LogEntry);
    // stdout and stderr are read apart: their relative order is not kept, each one's is.
    assert.deepEqual(taskLines.map((e) => [e.line, e.stream]).sort(), [["job 3 done", "stderr"], ["job 3 started", "stdout"]]);
    assert.ok(taskLines.every((e) => e.taskId === tasks.get(3)));

    const usage = beta9(["logs", "--deployment", "obs-echo", "--task", "x"]);
    assert.equal(await usage.exited, 2, usage.out());
    assert.match(usage.out(), /give exactly one of --deployment, --task, --container or --sandbox/);
  });

  test("beta9 logs -f prints the history, then new lines as they come", async () => {
    const follow = beta9(["logs", "--deployment", "obs-echo", "-f"]);
    await until("the history", () => (/echo 2\n/.test(follow.out()) ? true : undefined), 30_000, follow.out);
    await call(3);
    await until("the new line", () => (/[0-9a-f]{8} echo 3\n/.test(follow.out()) ? true : undefined), 30_000, follow.out);
    follow.child.kill("SIGTERM");
    await follow.exited;
  });
});

test("after the observability tests, the host holds no container, mount, netns or veth of theirs", { skip }, () => {
  const now = captureHostState();
  const ours = (xs: string[]) => xs.filter((x) => x.includes("obs") || x.includes(dir));
  assert.deepEqual(
    { netns: ours(now.netns), veths: ours(now.veths), mounts: ours(now.overlayMounts), cgroups: ours(now.cgroupDirs) },
    { netns: ours(hostBefore.netns), veths: ours(hostBefore.veths), mounts: ours(hostBefore.overlayMounts), cgroups: ours(hostBefore.cgroupDirs) },
  );
  rmSync(dir, { recursive: true, force: true });
});
