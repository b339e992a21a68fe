import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { Client } from "./client.js";
import { mapOrdered, QUEUE_FULL_RETRIES } from "./remote.js";
import { fn, taskQueue, type Workload } from "./workloads.js";

test("mapOrdered keeps input order, bounds concurrency, and yields as soon as the head is done", async () => {
  let inFlight = 0;
  let peak = 0;
  const delays = [30, 5, 5, 20, 1, 1];
  const results: number[] = [];
  for await (const r of mapOrdered(delays.keys(), 3, async (i) => {
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    await new Promise((res) => setTimeout(res, delays[i]));
    inFlight -= 1;
    return i * 10;
  })) results.push(r);
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50]);
  assert.equal(peak, 3);
});

test("calls that do not fit the workload's kind say which to use", async (t) => {
  const q = taskQueue({ name: "q" }, async () => 1);
  const f = fn({ name: "f" }, async () => 1);
  await assert.rejects(q.remote(1, { client: {} as never }), /use \.put\(\) for a task queue/);
  await assert.rejects(f.put(1, { client: {} as never }), /put is for task queues/);
  assert.throws(() => q.map([1]), /map is for functions/);
  assert.throws(() => f.map([1], { concurrency: 0 }), /concurrency must be a positive integer, got 0/);
  await assert.rejects(f.remote(1, { client: {} as never, version: 0 }), /version must be a deployed version/);
  // Neither the environment nor a CLI config names a gateway.
  const saved = { gateway: process.env.BETA9_GATEWAY, dir: process.env.BETA9_CONFIG_DIR };
  const empty = mkdtempSync(join(tmpdir(), "beta9-noconfig-"));
  t.after(() => {
    for (const [key, value] of [["BETA9_GATEWAY", saved.gateway], ["BETA9_CONFIG_DIR", saved.dir]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    rmSync(empty, { recursive: true, force: true });
  });
  delete process.env.BETA9_GATEWAY;
  process.env.BETA9_CONFIG_DIR = empty;
  await assert.rejects(f.remote(1), /no gateway configured: run `beta9 up`.*set BETA9_GATEWAY and BETA9_TOKEN/);
});

interface Seen {
  method: string;
  url: string;
  body: string;
}

/** A gateway stand-in: `handler` answers each request (its body read); every request is recorded. */
async function fakeGateway(t: TestContext, handler: (req: Seen, res: ServerResponse) => void): Promise<{ client: Client; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const entry = { method: req.method!, url: req.url!, body: Buffer.concat(chunks).toString() };
      seen.push(entry);
      handler(entry, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = new Client({ gateway: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: "k" });
  t.after(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { client, seen };
}

const json = (res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(value));

/** What the gateway answers past maxPendingTasks. */
const queueFull = (res: ServerResponse, count: number, limit: number, retryAfter = "0") =>
  json(res, 429, { error: { code: "QUEUE_FULL", message: `f has ${count} tasks pending or running (maxPendingTasks ${limit}); retry later`, details: { count, limit } } }, { "retry-after": retryAfter });

/** A function route that holds at most `limit` calls at once (429 QUEUE_FULL past it), each answered after `ms`. */
function boundedFunction(limit: number, ms: number) {
  const stats = { inFlight: 0, peak: 0, refused: 0 };
  const handler = (req: Seen, res: ServerResponse) => {
    if (stats.inFlight >= limit) {
      stats.refused += 1;
      return queueFull(res, stats.inFlight, limit);
    }
    stats.inFlight += 1;
    stats.peak = Math.max(stats.peak, stats.inFlight);
    setTimeout(() => {
      stats.inFlight -= 1;
      json(res, 200, (JSON.parse(req.body) as { i: number }).i);
    }, ms);
  };
  return { stats, handler };
}

test("map of more inputs than the queue takes completes in order, never more in flight than maxPendingTasks", async (t) => {
  // The code declares no bound (the default, 100, is more than the queue here takes): the 429s teach it.
  const gw = boundedFunction(5, 15);
  const { client } = await fakeGateway(t, gw.handler);
  const f = fn({ name: "f" }, async (input: { i: number }) => input.i);
  const inputs = Array.from({ length: 40 }, (_, i) => ({ i }));
  const out: unknown[] = [];
  for await (const r of f.map(inputs, { client, concurrency: 40 })) out.push(r);
  assert.deepEqual(out, inputs.map((x) => x.i));
  assert.ok(gw.stats.peak <= 5, `peak ${gw.stats.peak}`);
  assert.ok(gw.stats.refused > 0 && gw.stats.refused < 40, `${gw.stats.refused} refused: the window shrank after the first ones`);

  // Declared in code, the bound holds from the first call: nothing is refused.
  const declared = boundedFunction(5, 5);
  const { client: c2 } = await fakeGateway(t, declared.handler);
  const g = fn({ name: "f", maxPendingTasks: 5 }, async (input: { i: number }) => input.i);
  const out2: unknown[] = [];
  for await (const r of g.map(inputs, { client: c2, concurrency: 40 })) out2.push(r);
  assert.deepEqual(out2, inputs.map((x) => x.i));
  assert.deepEqual([declared.stats.peak, declared.stats.refused], [5, 0]);
});

test("remote() and put() retry a 429 after its Retry-After, a bounded number of times", async (t) => {
  let calls = 0;
  const { client, seen } = await fakeGateway(t, (req, res) => {
    if (req.url === "/function/busy") return queueFull(res, 1, 1);
    if (req.url === "/function/f") return ++calls === 1 ? queueFull(res, 1, 1, "1") : json(res, 200, "ok");
    if (req.url === "/taskqueue/q") return ++calls === 3 ? queueFull(res, 1, 1) : json(res, 200, { task_id: "t-1" });
    json(res, 404, { error: { code: "ROUTE_NOT_FOUND", message: req.url } });
  });
  const t0 = Date.now();
  assert.equal(await fn({ name: "f" }, async () => "ok").remote(null, { client }), "ok");
  assert.ok(Date.now() - t0 >= 950, `retried after ${Date.now() - t0} ms, before its Retry-After of 1 s`);
  assert.equal(String(await taskQueue({ name: "q" }, async () => null).put(null, { client })), "t-1");
  assert.equal(seen.filter((s) => s.url === "/taskqueue/q").length, 2);
  await assert.rejects(fn({ name: "busy" }, async () => null).remote(null, { client }), (err: Error & { code?: string }) => err.code === "QUEUE_FULL");
  assert.equal(seen.filter((s) => s.url === "/function/busy").length, 1 + QUEUE_FULL_RETRIES);
});

test("a workload with no deployment runs undeployed: its code is bundled and staged once, calls go to its stub by id", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-undeployed-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sdk = fileURLToPath(new URL("./index.js", import.meta.url));
  writeFileSync(join(dir, "app.mjs"), `import { fn, taskQueue, endpoint } from ${JSON.stringify(sdk)};
export const square = fn({ name: "square" }, async (n) => n * n);
export const later = taskQueue({ name: "later" }, async () => null);
export const hello = endpoint({ name: "hello" }, async () => "hi");
`);
  const app = (await import(join(dir, "app.mjs"))) as Record<string, Workload>;
  const stubs: { name: string; type: string }[] = [];
  const notFound = (res: ServerResponse, id: string) => json(res, 404, { error: { code: "RESOURCE_NOT_FOUND", message: `No active deployment ${id} in this workspace` } });
  const { client, seen } = await fakeGateway(t, (req, res) => {
    const [path] = req.url.split("?");
    if (/^\/(function|taskqueue|endpoint)\/[a-z]+(\/v\d+)?$/.test(path!)) return notFound(res, path!.split("/")[2]!);
    if (path === "/api/v1/image/build") return json(res, 200, { id: "img-1", status: "ready" });
    if (path!.startsWith("/api/v1/object/")) return req.method === "HEAD" ? res.writeHead(404).end() : json(res, 201, {});
    if (path === "/api/v1/stub") {
      const body = JSON.parse(req.body) as { name: string; type: string };
      stubs.push(body);
      return json(res, 201, { stub: { id: `stub-${body.name}`, type: body.type }, created: true });
    }
    if (path === "/function/id/stub-square") return json(res, 200, Number(req.body) ** 2);
    if (path === "/taskqueue/id/stub-later") return json(res, 200, { task_id: "t-9" });
    if (path === "/endpoint/id/stub-hello") return json(res, 200, "hi");
    json(res, 404, { error: { code: "ROUTE_NOT_FOUND", message: req.url } });
  });
  assert.equal(await app.square!.remote(3, { client }), 9);
  const out: unknown[] = [];
  for await (const r of app.square!.map([1, 2, 3, 4], { client })) out.push(r);
  assert.deepEqual(out, [1, 4, 9, 16]);
  assert.equal(String(await app.later!.put({}, { client })), "t-9");
  assert.equal(await app.hello!.remote({}, { client }), "hi");
  assert.deepEqual(stubs.map((s) => `${s.name} ${s.type}`), ["square function/serve", "later taskqueue/serve", "hello endpoint/serve"], "one stub each, not a deployment");
  assert.equal(seen.filter((s) => s.method === "PUT").length, 3, "each bundle uploaded once");
  assert.equal(seen.filter((s) => s.url === "/function/square").length, 1, "once staged, calls go straight to the stub");
  assert.equal(seen.filter((s) => s.url === "/function/id/stub-square").length, 5);
  // A named version is a deployment's: no fallback.
  await assert.rejects(app.square!.remote(3, { client, version: 2 }), (err: Error & { code?: string }) => err.code === "WORKLOAD_NOT_DEPLOYED");
});
