/**
 * A task whose container cannot be placed says why, with figures: through the real gateway, with
 * a stand-in worker over the real worker socket that takes placements and never runs them.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { pino } from "pino";
import WebSocket from "ws";
import { WORKER_CONNECT_PATH, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "../server.js";
import { makeTar, sha256 } from "../testing/tar.js";
import { callApi, until } from "../testing/wait.js";

let gw: RunningGateway;
let admin: string;
const dir = mkdtempSync(join(tmpdir(), "beta9-capwait-"));
/** The gateway's log, as JSON records. */
const logs: { level: number; msg: string; stubId?: string }[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split("\n")) if (line.trim()) logs.push(JSON.parse(line));
    done();
  },
});
let ws: WebSocket | undefined;

before(async () => {
  gw = await startGateway({ dataDir: dir, port: 0, logger: pino({ level: "info" }, sink) });
  admin = gw.bootstrap!.token.key;
});
after(async () => {
  ws?.terminate();
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = (method: string, path: string, body?: unknown) => callApi(gw.url, admin, method, path, body);

/** Connects a worker with `cpuMillicores` over the worker socket; it reports what the test tells it to. */
async function connectWorker(cpuMillicores: number) {
  const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  ws = new WebSocket(gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH, { headers: { authorization: `Bearer ${key}` } });
  const inbox: GatewayMessage[] = [];
  ws.on("message", (d) => inbox.push(JSON.parse(String(d)) as GatewayMessage));
  await new Promise((r) => ws!.once("open", r));
  const send = (m: WorkerMessage) => ws!.send(JSON.stringify(m));
  send({
    type: "hello", workerId: "small", hostname: "small", pool: "default", runtime: "runc", isolates: true,
    capacity: { cpuMillicores, memoryMiB: 4096, gpus: [] }, containers: [], version: "test",
  });
  await until("welcome", () => inbox.some((m) => m.type === "welcome"));
  return { inbox, send };
}

const waitingLogs = (stubId: string) => logs.filter((l) => l.stubId === stubId && l.level === 40 && l.msg.includes("waiting for capacity"));

test("a pending task names the capacity its container waits for; lists name the workload; deploy warns when nothing could ever fit", async () => {
  const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }]);
  const put = await fetch(`${gw.url}/api/v1/object/${sha256(bundle)}`, {
    method: "PUT", body: bundle, headers: { authorization: `Bearer ${admin}`, "content-type": "application/octet-stream" },
  });
  assert.equal(put.status, 201);
  const created = await api("POST", "/api/v1/stub", {
    name: "resize", type: "taskqueue/deployment", objectId: sha256(bundle), config: { handler: "app.js:x", cpu: 1, autoscaler: { type: "queue_depth", maxContainers: 2 } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const stub = created.json.stub as { id: string };
  const put1 = async () => (await api("POST", `/taskqueue/id/${stub.id}`, {})).json.task_id as string;

  // No worker at all.
  const first = await put1();
  const none = await until("the first task to wait", async () => (await api("GET", `/api/v1/task/${first}`)).json.waiting);
  assert.equal(none.message, "waiting for capacity: no worker connected");
  assert.deepEqual(none.constraints, ["no_worker"]);

  // A worker with 2000m: the first container takes 1000m; a plain container 500m more; 500m stay free.
  const worker = await connectWorker(2000);
  await until("the first container placed", () => worker.inbox.some((m) => m.type === "container.run"));
  assert.equal((await api("GET", `/api/v1/task/${first}`)).json.waiting, undefined, "placed: nothing to wait for");
  const other = (await api("POST", "/api/v1/container", { command: ["sleep", "60"], cpu: "500m" })).json as { id: string };
  await until("the plain container placed", () => worker.inbox.filter((m) => m.type === "container.run").length === 2);

  // The second task needs a second 1000m container, and only 500m are free.
  const second = await put1();
  const task = await until("the second task to wait", async () => {
    const t = (await api("GET", `/api/v1/task/${second}`)).json;
    return t.waiting?.constraints[0] === "cpu" && t;
  });
  assert.equal(task.status, "PENDING");
  assert.equal(task.stubName, "resize");
  assert.equal(task.waiting.message, "waiting for capacity: needs 1000m CPU, 500m free on 1 worker");
  assert.deepEqual([task.waiting.needs.cpuMillicores, task.waiting.free.cpuMillicores, task.waiting.workers], [1000, 500, 1]);

  // The log says so once per wait, not at each retry: once with no worker, once now.
  const pending = (await api("GET", "/api/v1/container?active=true")).json.items as { id: string; stubName?: string; workerId: string | null; message: string | null }[];
  const unplaced = pending.find((c) => c.workerId === null)!;
  assert.equal(unplaced.stubName, "resize", "the container list names the workload");
  assert.match(unplaced.message ?? "", /needs 1000m CPU, 500m free on 1 worker/);
  assert.equal(pending.find((c) => c.id === other.id)!.stubName, undefined, "a plain container has no workload");
  assert.deepEqual(waitingLogs(stub.id).map((l) => l.msg), [
    "resize: waiting for capacity: no worker connected",
    "resize: waiting for capacity: needs 1000m CPU, 500m free on 1 worker",
  ]);
  const listed = (await api("GET", "/api/v1/task")).json.items as { id: string; stubName?: string }[];
  assert.deepEqual(listed.filter((t) => t.id === first || t.id === second).map((t) => t.stubName), ["resize", "resize"]);

  // Room appears: the waiting container is placed and the task no longer says it waits.
  await api("POST", `/api/v1/container/${other.id}/stop`);
  await until("the stop", () => worker.inbox.some((m) => m.type === "container.stop"));
  worker.send({ type: "container.state", containerId: other.id, state: "EXITED", exitCode: 0, reason: "stopped" });
  await until("the second container placed", () => worker.inbox.filter((m) => m.type === "container.run").length === 3);
  assert.equal((await api("GET", `/api/v1/task/${second}`)).json.waiting, undefined);
  assert.ok(logs.some((l) => l.msg === "resize: capacity found, placed"));
  assert.equal(waitingLogs(stub.id).length, 2);

  // A workload larger than every connected worker still deploys, with a warning naming the figures.
  const huge = await api("POST", "/api/v1/stub", { name: "huge", type: "endpoint/deployment", config: { cpu: 8 } });
  assert.equal(huge.status, 201);
  assert.equal(huge.json.warnings.length, 1);
  assert.match(huge.json.warnings[0], /^huge: needs 8000m CPU; the largest connected worker has 2000m; /);
  assert.equal((await api("POST", "/api/v1/deployment", { stubId: huge.json.stub.id })).status, 201);
});

test("a task that expires while its container waits for capacity says what it waited for", async () => {
  // The stand-in worker of the test above (2000m) is still connected: 4 CPUs never fit on it.
  const workers = (await api("GET", "/api/v1/worker")).json.items as unknown[];
  assert.equal(workers.length, 1, "runs after the test that connects the stand-in worker");
  const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }]);
  await fetch(`${gw.url}/api/v1/object/${sha256(bundle)}`, {
    method: "PUT", body: bundle, headers: { authorization: `Bearer ${admin}`, "content-type": "application/octet-stream" },
  });
  const created = await api("POST", "/api/v1/stub", {
    name: "too-big", type: "taskqueue/deployment", objectId: sha256(bundle), config: { handler: "app.js:x", cpu: 4, taskPolicy: { ttl: 1 } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const id = (await api("POST", `/taskqueue/id/${created.json.stub.id}`, {})).json.task_id as string;
  const expired = await until("the task to expire", async () => {
    const t = (await api("GET", `/api/v1/task/${id}`)).json;
    return t.status === "EXPIRED" && t;
  });
  assert.match(expired.error, /^waited longer than its ttl; waiting for capacity: needs 4000m CPU, \d+m free on 1 worker$/);
});
