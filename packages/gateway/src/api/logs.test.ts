/**
 * GET /api/v1/logs on a real app, a real SQLite log store and the real container registry: lines
 * are appended as the worker socket appends them; follow runs over a real socket.
 */
import { MAX_FOLLOWS_PER_WORKSPACE } from "./logs.js";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LogEntry, LogLine } from "@beta9/protocol";
import { SqliteLogStore } from "../logs/sqlite.js";
import type { LogSource } from "../logs/types.js";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-logs-api-"));
let gw: TestGateway;
let logs: SqliteLogStore;
let otherKey: string;
const ids = { stub: "", deployment: "", task: randomUUID() };

const lines = (...texts: string[]): LogLine[] => texts.map((line, i) => ({ stream: "stdout", line, at: 1000 + i }));
const items = async (url: string, key?: string) => {
  const res = await gw.request("GET", url, key === undefined ? {} : { key });
  assert.equal(res.statusCode, 200, res.body);
  return (res.json() as { items: LogEntry[] }).items;
};

/** A container in the live registry, as the scheduler makes one. */
function container(stubId: string | null): LogSource {
  const containerId = randomUUID();
  gw.scheduler.containers.create({
    containerId, workspaceId: gw.workspaceId, stubId, imageId: null, command: ["true"], env: {}, cpuMillicores: 100, memoryMiB: 64, gpu: [], gpuCount: 0, ports: [], pool: null,
  });
  return { workspaceId: gw.workspaceId, containerId, stubId };
}

before(async () => {
  logs = new SqliteLogStore(join(dir, "logs.db"), { pruneIntervalMs: 0 });
  gw = await createTestGateway({ logs });
  otherKey = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other" } })).json().token.key;
  const stub = await gw.request("POST", "/api/v1/stub", { body: { name: "logged", type: "taskqueue/deployment", config: { cpu: 1 } } });
  assert.equal(stub.statusCode, 201, stub.body);
  ids.stub = stub.json().stub.id;
  ids.deployment = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: ids.stub } })).json().id;
});

after(async () => {
  await gw?.close();
  await logs?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("GET /api/v1/logs", () => {
  test("takes exactly one of containerId, sandboxId, deploymentId, stubId or taskId", async () => {
    for (const url of ["/api/v1/logs", `/api/v1/logs?stubId=${ids.stub}&deploymentId=${ids.deployment}`]) {
      const res = await gw.request("GET", url);
      assert.equal(res.statusCode, 400, res.body);
      assert.equal(res.json().error.code, "BAD_REQUEST");
      assert.match(res.json().error.message, /exactly one of containerId, sandboxId, deploymentId, stubId, taskId/);
    }
  });

  test("by container, deployment, stub and task; another workspace sees none of it", async () => {
    const a = container(ids.stub);
    const b = container(ids.stub);
    logs.append(a, lines("a: boot"));
    logs.append(b, [{ stream: "stderr", line: "b: task says hi", at: 5, taskId: ids.task }]);
    logs.append(a, lines("a: later"));
    assert.deepEqual((await items(`/api/v1/logs?containerId=${a.containerId}`)).map((e) => e.line), ["a: boot", "a: later"]);
    const byDeployment = await items(`/api/v1/logs?deploymentId=${ids.deployment}`);
    assert.deepEqual(byDeployment.map((e) => [e.containerId, e.line]), [[a.containerId, "a: boot"], [b.containerId, "b: task says hi"], [a.containerId, "a: later"]]);
    assert.deepEqual(await items(`/api/v1/logs?stubId=${ids.stub}`), byDeployment);
    const byTask = await items(`/api/v1/logs?taskId=${ids.task}`);
    assert.deepEqual(byTask.map((e) => [e.stream, e.line, e.taskId]), [["stderr", "b: task says hi", ids.task]]);
    for (const url of [`/api/v1/logs?containerId=${a.containerId}`, `/api/v1/logs?deploymentId=${ids.deployment}`, `/api/v1/logs?stubId=${ids.stub}`]) {
      const res = await gw.request("GET", url, { key: otherKey });
      assert.equal(res.statusCode, 404, url);
      assert.equal(res.json().error.code, "RESOURCE_NOT_FOUND");
    }
    assert.deepEqual(await items(`/api/v1/logs?taskId=${ids.task}`, otherKey), []);
  });

  test("limit gives the last lines, after pages on, since filters by arrival", async () => {
    const c = container(null);
    logs.append(c, lines("1", "2", "3", "4", "5"));
    const last = await items(`/api/v1/logs?containerId=${c.containerId}&limit=2`);
    assert.deepEqual(last.map((e) => e.line), ["4", "5"]);
    const all = await items(`/api/v1/logs?containerId=${c.containerId}`);
    assert.deepEqual((await items(`/api/v1/logs?containerId=${c.containerId}&after=${all[0]!.seq}&limit=2`)).map((e) => e.line), ["2", "3"]);
    assert.deepEqual((await items(`/api/v1/logs?containerId=${c.containerId}&since=1h`)).length, 5);
    assert.deepEqual(await items(`/api/v1/logs?containerId=${c.containerId}&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), []);
    const bad = await gw.request("GET", `/api/v1/logs?containerId=${c.containerId}&since=soon`);
    assert.equal(bad.statusCode, 422);
    assert.match(bad.json().error.message, /since/);
  });

  test("follow: the history, then each new line, then end when the container exits", async () => {
    const c = container(ids.stub);
    logs.append(c, lines("history"));
    const address = await gw.app.listen({ host: "127.0.0.1", port: 0 });
    const res = await fetch(`${address}/api/v1/logs?containerId=${c.containerId}&follow=true`, { headers: { authorization: `Bearer ${gw.adminKey}` } });
    assert.equal(res.status, 200);
    const events: { name: string; data: { line?: string; reason?: string } }[] = [];
    let buffer = "";
    let appended = false;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += Buffer.from(chunk).toString();
      for (let at = buffer.indexOf("\n\n"); at !== -1; at = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (name && data) events.push({ name, data: JSON.parse(data) });
      }
      // Once the history is in, a new line and then the container's exit.
      if (!appended && events.length > 0) {
        appended = true;
        logs.append(c, lines("live"));
        gw.scheduler.containers.apply({ containerId: c.containerId, state: "EXITED", exitCode: 0, reason: "exited" });
      }
    }
    assert.deepEqual(events.map((e) => [e.name, e.data.line ?? e.data.reason]), [["log", "history"], ["log", "live"], ["end", "the container ended"]]);
  });

  test("a workspace follows at most MAX_FOLLOWS_PER_WORKSPACE streams at once; a closed one frees its place", async () => {
    const c = container(ids.stub);
    const address = await gw.app.listen({ host: "127.0.0.1", port: 0 }).catch(() => `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`);
    const open = () => {
      const aborter = new AbortController();
      return fetch(`${address}/api/v1/logs?containerId=${c.containerId}&follow=true`, { headers: { authorization: `Bearer ${gw.adminKey}` }, signal: aborter.signal })
        .then((res) => ({ res, close: () => aborter.abort() }));
    };
    const streams = await Promise.all(Array.from({ length: MAX_FOLLOWS_PER_WORKSPACE }, open));
    assert.ok(streams.every((s) => s.res.status === 200));
    const refused = await open();
    assert.equal(refused.res.status, 429);
    assert.equal(((await refused.res.json()) as { error: { code: string } }).error.code, "QUOTA_EXCEEDED");
    streams[0]!.close();
    let again = await open();
    for (let i = 0; i < 100 && again.res.status === 429; i++) {
      await new Promise((r) => setTimeout(r, 20));
      again = await open();
    }
    assert.equal(again.res.status, 200, "a place freed by a closed follow is taken again");
    for (const s of [...streams, again]) s.close();
  });
});

describe("GET /api/v1/container/:id/logs", () => {
  test("a container the live registry no longer knows (a gateway restart) answers from the stored log", async () => {
    const gone: LogSource = { workspaceId: gw.workspaceId, containerId: randomUUID(), stubId: null };
    logs.append(gone, [{ stream: "stdout", line: "from before", at: 7, taskId: "t" }]);
    const res = await gw.request("GET", `/api/v1/container/${gone.containerId}/logs`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json().items, [{ stream: "stdout", line: "from before", at: 7, taskId: "t" }]);
    assert.equal((await gw.request("GET", `/api/v1/container/${gone.containerId}/logs`, { key: otherKey })).statusCode, 404);
  });
});
