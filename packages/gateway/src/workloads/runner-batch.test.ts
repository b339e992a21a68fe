import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { Pool } from "undici";
import { hashStubConfig, normalizeStubConfig } from "@beta9/protocol";
import { SqliteStore } from "../store/sqlite/store.js";
import { RunnerBatches } from "./runner-batch.js";

const body = (req: IncomingMessage) => new Promise<string>((resolve) => {
  let text = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => (text += c));
  req.on("end", () => resolve(text));
});

/** A runner that answers /invoke-batch (unless `batch` is false) and /invoke; "slow" tasks never end. */
async function fakeRunner(batch: boolean): Promise<{ server: Server; pool: Pool; requests: { path: string; ids: string[] }[]; retries: Map<string, unknown> }> {
  const requests: { path: string; ids: string[] }[] = [];
  const retries = new Map<string, unknown>();
  const server = createServer(async (req, res) => {
    const text = await body(req);
    if (req.url === "/invoke-batch" && batch) {
      const tasks = (JSON.parse(text) as { tasks: { id: string; input: unknown; retries?: unknown }[] }).tasks;
      requests.push({ path: req.url, ids: tasks.map((t) => t.id) });
      for (const t of tasks) retries.set(t.id, t.retries);
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (const t of tasks) {
        if (t.input === "slow") continue;
        const status = t.input === "bad" ? 422 : 200;
        const answer = status === 200 ? { result: t.input } : { error: { code: "INPUT_INVALID", message: "bad input" } };
        res.write(`${JSON.stringify({ id: t.id, status, body: answer })}\n`);
      }
      if (!tasks.some((t) => t.input === "slow")) res.end();
      return;
    }
    if (req.url === "/invoke") {
      requests.push({ path: req.url, ids: [String(req.headers["x-beta9-task-id"])] });
      retries.set(String(req.headers["x-beta9-task-id"]), req.headers["x-beta9-task-retries"]);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ result: (JSON.parse(text) as { input: unknown }).input }));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { server, pool: new Pool(`http://127.0.0.1:${port}`), requests, retries };
}

describe("runner batches", () => {
  const closers: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const close of closers) await close();
  });

  it("sends the calls of one turn as one request; each resolves from its own line", async () => {
    const runner = await fakeRunner(true);
    closers.push(() => runner.pool.destroy(), () => new Promise((r) => runner.server.close(r)));
    const batches = new RunnerBatches();
    const signal = new AbortController().signal;
    const answers = await Promise.all([
      batches.call(runner.pool, "a", '{"n":1}', signal), batches.call(runner.pool, "b", '"bad"', signal, 2), batches.call(runner.pool, "c", "null", signal),
    ]);
    assert.deepEqual(runner.requests, [{ path: "/invoke-batch", ids: ["a", "b", "c"] }]);
    assert.deepEqual([...runner.retries], [["a", 0], ["b", 2], ["c", 0]], "each task carries its failed attempts");
    assert.deepEqual(answers.map((a) => a.statusCode), [200, 422, 200]);
    assert.deepEqual(answers[0]!.body, { result: { n: 1 } });
    assert.equal(answers[1]!.body.error?.message, "bad input");
    assert.deepEqual(answers[2]!.body, { result: null });
  });

  it("an aborted call settles at once, alone; the others of its request still answer", async () => {
    const runner = await fakeRunner(true);
    closers.push(() => runner.pool.destroy(), () => new Promise((r) => runner.server.close(r)));
    const batches = new RunnerBatches();
    const slow = new AbortController();
    const pending = batches.call(runner.pool, "slow", '"slow"', slow.signal);
    const fast = batches.call(runner.pool, "fast", "1", new AbortController().signal);
    assert.deepEqual((await fast).body, { result: 1 });
    slow.abort(new Error("timeout"));
    await assert.rejects(pending, /timeout/);
  });

  it("a runner without /invoke-batch gets one /invoke per task", async () => {
    const runner = await fakeRunner(false);
    closers.push(() => runner.pool.destroy(), () => new Promise((r) => runner.server.close(r)));
    const batches = new RunnerBatches();
    const signal = new AbortController().signal;
    const answers = await Promise.all([batches.call(runner.pool, "a", "1", signal), batches.call(runner.pool, "b", "2", signal, 3)]);
    assert.deepEqual(answers.map((a) => a.body), [{ result: 1 }, { result: 2 }]);
    assert.deepEqual([runner.retries.get("a"), runner.retries.get("b")], ["0", "3"], "the retry count rides in a header");
    assert.deepEqual(await Promise.all(["c", "d"].map(async (id, i) => (await batches.call(runner.pool, id, String(i), signal)).body)), [{ result: 0 }, { result: 1 }]);
    assert.deepEqual(runner.requests.map((r) => r.path), ["/invoke", "/invoke", "/invoke", "/invoke"], "after the 404, which it does not record");
  });

  it("a task alone in its turn, or with a large input, is a plain /invoke; batches stay under the size cap", async () => {
    const runner = await fakeRunner(true);
    closers.push(() => runner.pool.destroy(), () => new Promise((r) => runner.server.close(r)));
    const batches = new RunnerBatches();
    const signal = new AbortController().signal;
    assert.deepEqual((await batches.call(runner.pool, "alone", "1", signal)).body, { result: 1 });
    const big = JSON.stringify("x".repeat(3 * 1024 * 1024));
    const answers = await Promise.all([
      batches.call(runner.pool, "b1", big, signal), batches.call(runner.pool, "b2", big, signal), batches.call(runner.pool, "s1", "1", signal),
      batches.call(runner.pool, "huge", JSON.stringify("y".repeat(5 * 1024 * 1024)), signal),
    ]);
    assert.deepEqual(answers.map((a) => a.statusCode), [200, 200, 200, 200]);
    assert.deepEqual(runner.requests.map((r) => `${r.path} ${r.ids.join(",")}`).sort(), ["/invoke alone", "/invoke b1", "/invoke huge", "/invoke-batch b2,s1"]);
  });
});

describe("a task started at its put (written RUNNING)", () => {
  it("is never claimed again; after a gateway stop it is RETRY (counted) and claimable by its container, and past maxRetries ERROR", async () => {
    const store = new SqliteStore(":memory:");
    try {
      const ws = (await store.workspaces.create("direct", "workspace")).workspace.id;
      const app = await store.apps.getOrCreate(ws, "app");
      const config = normalizeStubConfig("taskqueue", {});
      const stubId = (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "q", type: "taskqueue/deployment", objectId: null, config, configHash: hashStubConfig(config) })).stub.id;
      const task = await store.tasks.create(ws, stubId, { n: 1 }, { maxRetries: 1, timeout: 10, ttl: 0 }, { containerId: "c1" });
      assert.deepEqual([task.status, task.containerId, task.inputJson, task.startedAt !== null], ["RUNNING", "c1", '{"n":1}', true]);
      const stored = await store.tasks.get(ws, task.id);
      assert.deepEqual([stored?.status, stored?.containerId, stored?.retries], ["RUNNING", "c1", 0]);
      assert.equal(await store.tasks.claimNext(stubId, "c2"), undefined, "already running");
      assert.equal(await store.tasks.inflight(stubId), 1);
      assert.deepEqual(await store.tasks.expireDue(), [], "started: its ttl no longer applies");
      assert.deepEqual(await store.tasks.requeueRunning(), [{ id: task.id, stubId, status: "RETRY" }]);
      assert.equal(await store.tasks.claimNext(stubId, "c2"), undefined, "first offered to the container that ran it");
      const again = await store.tasks.claimNext(stubId, "c1");
      assert.deepEqual([again?.id, again?.status, again?.retries, again?.inputJson], [task.id, "RUNNING", 1, '{"n":1}'], "the cut-off attempt counts");
      // Its one retry is spent: a second gateway stop during the attempt ends it.
      assert.deepEqual(await store.tasks.requeueRunning(), [{ id: task.id, stubId, status: "ERROR" }]);
      const ended = await store.tasks.get(ws, task.id);
      assert.deepEqual([ended?.status, ended?.retries, ended?.endedAt !== null], ["ERROR", 2, true]);
      assert.match(ended?.error ?? "", /gateway stopped during the attempt, and the task policy allows no more retries/);
      assert.equal(await store.tasks.inflight(stubId), 0);
    } finally {
      await store.close();
    }
  });
});
