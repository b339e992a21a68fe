/**
 * The dispatcher's state machine over the runner client's outcomes, against a real store, the real
 * scheduler and autoscaler, and a runner played by an HTTP server on loopback. Containers are
 * "started" by hand: the test reports them RUNNING on the fake runner's port, or EXITED.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { hashStubConfig, normalizeStubConfig, type Stub, type Task } from "@beta9/protocol";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { SqliteStore } from "../store/sqlite/store.js";
import { Autoscaler } from "../workloads/autoscaler.js";
import { TaskDispatcher } from "./dispatcher.js";

let server: Server;
let port = 0;
const cancelled: string[] = [];
let store: SqliteStore;
let scheduler: Scheduler;
let autoscaler: Autoscaler;
let dispatcher: TaskDispatcher;
let workspaceId = "";
let appId = "";

before(async () => {
  // Inputs say what to do: { hang: true } never answers (until the connection drops), { fail: "…" } throws.
  server = createServer((req, res) => {
    if (req.url === "/health") return void res.writeHead(200).end('{"status":"ok"}');
    if (req.url?.startsWith("/cancel/")) {
      cancelled.push(decodeURIComponent(req.url.slice("/cancel/".length)));
      return void res.writeHead(204).end();
    }
    if (req.url !== "/invoke") return void res.writeHead(404).end(); // no batches: one /invoke per task
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      const input = (JSON.parse(body) as { input: { hang?: boolean; fail?: string; n?: number } }).input;
      if (input.hang) return;
      const answer = input.fail ? [500, { error: { code: "HANDLER_ERROR", message: input.fail, stack: `Error: ${input.fail}` } }] as const : [200, { result: { n: input.n } }] as const;
      res.writeHead(answer[0], { "content-type": "application/json" }).end(JSON.stringify(answer[1]));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
  store = new SqliteStore(":memory:");
  workspaceId = (await store.workspaces.create("dispatch", "workspace")).workspace.id;
  appId = (await store.apps.getOrCreate(workspaceId, "app")).id;
  scheduler = new Scheduler(new ContainerRegistry(), { backlogTimeoutMs: 60_000 });
  autoscaler = new Autoscaler({ scheduler, acquireTimeoutMs: 60_000 });
  dispatcher = new TaskDispatcher({ store, autoscaler, retryBaseMs: 1 });
});

after(async () => {
  dispatcher.close();
  autoscaler.close();
  scheduler.close();
  await store.close();
  server.closeAllConnections();
  server.close();
});

async function queue(name: string, policy: { maxRetries: number; timeout: number }): Promise<Stub> {
  const config = { ...normalizeStubConfig("taskqueue", { taskPolicy: policy }), handler: "app.js:q" };
  return (await store.stubs.getOrCreate({ workspaceId, appId, name, type: "taskqueue/deployment", objectId: "0".repeat(64), config, configHash: hashStubConfig(config) })).stub;
}

/** Polls until `check` returns something (no time bound here: the test runner's own timeout ends a hang). */
async function until<T>(check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The stub's next container to start: reported RUNNING on the fake runner. */
async function startContainer(stub: Stub, not: readonly string[] = []): Promise<string> {
  const record = await until(() => scheduler.containers.list().find((c) => c.stubId === stub.id && c.state === "PENDING" && !not.includes(c.id)));
  scheduler.containers.apply({ containerId: record.id, state: "RUNNING", ports: { "8000": { host: "127.0.0.1", port } } });
  return record.id;
}

const statusOf = async (id: string, ...wanted: Task["status"][]) => until(async () => {
  const task = await store.tasks.getAny(id);
  return task && wanted.includes(task.status) ? task : undefined;
});

test("an answer completes the task; a handler error is RETRY with its message, then ERROR past maxRetries", async () => {
  const stub = await queue("answers", { maxRetries: 1, timeout: 60 });
  const ok = await dispatcher.put(stub, { n: 7 });
  await startContainer(stub);
  assert.deepEqual((await statusOf(ok.id, "COMPLETE")).result, { n: 7 });
  const failing = await dispatcher.put(stub, { fail: "no such model" });
  const ended = await statusOf(failing.id, "ERROR");
  assert.equal(ended.retries, 1);
  assert.match(ended.error ?? "", /no such model/);
});

test("a container that exits mid-attempt: the attempt is aborted as lost, RETRY, then it completes on another container", async () => {
  const stub = await queue("survivor", { maxRetries: 2, timeout: 60 });
  const task = await dispatcher.put(stub, { hang: true });
  const first = await startContainer(stub);
  await statusOf(task.id, "RUNNING");
  // The hanging call is open on the first container; its worker is lost.
  await until(() => (autoscaler.containersOf(stub.id).find((c) => c.id === first)?.inflight === 1 ? true : undefined));
  scheduler.containers.apply({ containerId: first, state: "EXITED", reason: "worker_lost", message: "worker w1 sent nothing" });
  const retried = await until(async () => {
    const t = await store.tasks.getAny(task.id);
    return t && t.retries >= 1 ? t : undefined;
  });
  assert.match(retried.error ?? "", /the container was lost \(worker_lost\) during the attempt/);
  assert.ok(!cancelled.includes(task.id), "a lost attempt is retried, not cancelled");
});

test("an attempt past its timeout is TIMEOUT, and the runner is told to cancel it", async () => {
  const stub = await queue("slow", { maxRetries: 2, timeout: 1 });
  const task = await dispatcher.put(stub, { hang: true });
  await startContainer(stub);
  const ended = await statusOf(task.id, "TIMEOUT");
  assert.equal(ended.error, "ran longer than its timeout of 1 s");
  assert.equal(ended.retries, 0, "a timeout is not retried");
  assert.ok(cancelled.includes(task.id));
});

test("a cancelled task stays CANCELLED: the runner is told, and the aborted exchange changes nothing", async () => {
  const stub = await queue("cancelled", { maxRetries: 2, timeout: 60 });
  const task = await dispatcher.put(stub, { hang: true });
  await startContainer(stub);
  const running = await statusOf(task.id, "RUNNING");
  assert.equal(await dispatcher.cancel(running), true);
  assert.ok(cancelled.includes(task.id));
  // Nothing the dispatcher does after the abort moves it on.
  await new Promise((r) => setTimeout(r, 50));
  const after = await store.tasks.getAny(task.id);
  assert.deepEqual([after?.status, after?.retries], ["CANCELLED", 0]);
});
