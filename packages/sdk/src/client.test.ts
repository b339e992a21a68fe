/**
 * The client against a small node:http server that records requests: what goes on the wire and
 * how each kind of answer (JSON, error body, non-JSON, no answer) is turned into a result or an
 * ApiError. The CLI's end-to-end tests run the same client against the real gateway.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError, Client } from "./index.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

type Handler = (req: Seen, res: ServerResponse) => void;

async function serve(t: { after(fn: () => Promise<void>): void }, handler: Handler): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const entry = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(entry);
      handler(entry, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
}

test("sends the token, JSON body and query under /api/v1 and parses the answer", async (t) => {
  const { url, seen } = await serve(t, (_req, res) => json(res, 201, { id: "t1", key: "b9_x" }));
  const client = new Client({ gateway: url, token: "b9_secret" });
  t.after(() => client.close());
  const created = await client.createToken({ type: "workspace", name: "ci" });
  assert.deepEqual(created, { id: "t1", key: "b9_x" });
  await client.request("GET", "/deployment", { query: { name: "web", active: false, limit: 5, offset: undefined } });
  assert.equal(seen[0]!.method, "POST");
  assert.equal(seen[0]!.url, "/api/v1/token");
  assert.equal(seen[0]!.headers.authorization, "Bearer b9_secret");
  assert.equal(seen[0]!.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(seen[0]!.body.toString()), { type: "workspace", name: "ci" });
  assert.equal(seen[1]!.url, "/api/v1/deployment?name=web&active=false&limit=5");
});

test("list helpers unwrap {items}; listDeployments maps its filters to the query", async (t) => {
  const { url, seen } = await serve(t, (_req, res) => json(res, 200, { items: [{ id: "d1" }] }));
  const client = new Client({ gateway: url });
  t.after(() => client.close());
  assert.deepEqual(await client.listDeployments({ active: true, limit: 2 }), [{ id: "d1" }]);
  assert.equal(seen[0]!.url, "/api/v1/deployment?active=true&limit=2");
  assert.equal(seen[0]!.headers.authorization, undefined, "no token, no header");
});

test("a path prefix in the gateway URL is kept", async (t) => {
  const { url, seen } = await serve(t, (_req, res) => json(res, 200, { status: "ok" }));
  const client = new Client({ gateway: `${url}/beta9/` });
  t.after(() => client.close());
  await client.health();
  assert.equal(seen[0]!.url, "/beta9/api/v1/health");
});

test("an error body becomes an ApiError with the gateway's code, message and status", async (t) => {
  const { url } = await serve(t, (_req, res) =>
    json(res, 404, { error: { code: "RESOURCE_NOT_FOUND", message: "No deployment d9 in this workspace" } }),
  );
  const client = new Client({ gateway: url, token: "x" });
  t.after(() => client.close());
  await assert.rejects(client.stopDeployment("d9"), (err: ApiError) => {
    assert.ok(err instanceof ApiError && err instanceof Error);
    assert.equal(err.status, 404);
    assert.equal(err.code, "RESOURCE_NOT_FOUND");
    assert.equal(err.message, "No deployment d9 in this workspace");
    return true;
  });
});

test("a non-JSON error (a proxy in between) becomes HTTP_<status>", async (t) => {
  const { url } = await serve(t, (_req, res) => res.writeHead(502).end("<html>bad gateway</html>"));
  const client = new Client({ gateway: url });
  t.after(() => client.close());
  await assert.rejects(client.listTokens(), (err: ApiError) => err.code === "HTTP_502" && err.status === 502 && /bad gateway/.test(err.message));
});

test("no gateway listening is UNREACHABLE, status 0, with the URL in the message", async (t) => {
  // A port that was just free: bind, note, close.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const gateway = `http://127.0.0.1:${port}`;
  const client = new Client({ gateway });
  t.after(() => client.close());
  await assert.rejects(client.health(), (err: ApiError) => err.code === "UNREACHABLE" && err.status === 0 && err.message.includes(gateway));
});

test("headObject is true on 200 and false on 404; putObject sends raw bytes", async (t) => {
  const known = "a".repeat(64);
  const { url, seen } = await serve(t, (req, res) => {
    if (req.method === "HEAD") return res.writeHead(req.url.endsWith(known) ? 200 : 404).end();
    json(res, 201, { hash: known, size: req.body.length, createdAt: "2025-01-01T00:00:00.000Z" });
  });
  const client = new Client({ gateway: url, token: "x" });
  t.after(() => client.close());
  assert.equal(await client.headObject(known), true);
  assert.equal(await client.headObject("b".repeat(64)), false);
  const bytes = Buffer.from([0, 1, 2, 255]);
  assert.equal((await client.putObject(known, bytes)).size, 4);
  const put = seen.find((s) => s.method === "PUT")!;
  assert.equal(put.headers["content-type"], "application/octet-stream");
  assert.deepEqual(put.body, bytes);
});

test("headObject still throws on errors other than 404", async (t) => {
  const { url } = await serve(t, (_req, res) => res.writeHead(401).end());
  const client = new Client({ gateway: url });
  t.after(() => client.close());
  await assert.rejects(client.headObject("a".repeat(64)), (err: ApiError) => err.status === 401 && err.code === "HTTP_401");
});

test("a gateway that is not an http(s) URL is refused up front", () => {
  assert.throws(() => new Client({ gateway: "127.0.0.1:1994" }), TypeError);
  assert.throws(() => new Client({ gateway: "ftp://host" }), TypeError);
});

test("putTask answers a task handle: status, result (waiting on the SSE stream), cancel; it reads as the id", async (t) => {
  const task = { id: "t-1", status: "COMPLETE", result: { ok: 1 }, error: null, retries: 0 };
  const { url, seen } = await serve(t, (req, res) => {
    if (req.url === "/taskqueue/q") return json(res, 200, { task_id: "t-1" });
    if (req.url === "/api/v1/task/t-1/subscribe") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      return res.end(`event: state\ndata: ${JSON.stringify({ ...task, status: "RUNNING" })}\n\nevent: end\ndata: ${JSON.stringify(task)}\n\n`);
    }
    if (req.url === "/api/v1/task/t-1/cancel") return json(res, 200, { ...task, status: "CANCELLED" });
    return json(res, 200, { ...task, status: "RETRY", retries: 1, error: "boom" });
  });
  const client = new Client({ gateway: url, token: "k" });
  t.after(() => client.close());
  const handle = await client.putTask("q", { n: 1 });
  assert.equal(handle.id, "t-1");
  assert.equal(`${handle}`, "t-1");
  assert.equal(JSON.stringify({ handle }), '{"handle":"t-1"}');
  assert.equal((await handle.status()).status, "RETRY");
  assert.equal(await handle.result({ wait: false }), undefined, "not ended yet: no result");
  assert.deepEqual(await handle.result(), { ok: 1 });
  assert.equal((await handle.cancel()).status, "CANCELLED");
  assert.equal((await client.waitForTask(handle)).status, "COMPLETE", "the handle works where an id did");
  assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), [
    "POST /taskqueue/q", "GET /api/v1/task/t-1", "GET /api/v1/task/t-1", "GET /api/v1/task/t-1/subscribe", "POST /api/v1/task/t-1/cancel", "GET /api/v1/task/t-1/subscribe",
  ]);
});

test("a task that ended ERROR makes result() throw TASK_FAILED; a queue with no deployment is WORKLOAD_NOT_DEPLOYED", async (t) => {
  const { url } = await serve(t, (req, res) => {
    if (req.url === "/taskqueue/missing-queue") return json(res, 404, { error: { code: "RESOURCE_NOT_FOUND", message: "No active deployment missing-queue in this workspace" } });
    if (req.url === "/taskqueue/q") return json(res, 200, { task_id: "t-2" });
    return json(res, 200, { id: "t-2", status: "ERROR", error: "handler threw", result: null });
  });
  const client = new Client({ gateway: url, token: "k" });
  t.after(() => client.close());
  await assert.rejects((await client.putTask("q", null)).result({ wait: false }), (err: Error & { code?: string }) => {
    assert.equal(err.code, "TASK_FAILED");
    assert.match(err.message, /t-2 ended ERROR: handler threw/);
    return true;
  });
  await assert.rejects(client.putTask("missing-queue", {}), (err: ApiError) => {
    assert.equal(err.code, "WORKLOAD_NOT_DEPLOYED");
    assert.equal(err.status, 404);
    assert.match(err.message, /^task queue missing-queue has no active deployment; deploy it first: `beta9 deploy FILE:EXPORT` or `await missingQueue.deploy\(\)`/);
    return true;
  });
});

test("an endpoint that answers a stream is STREAMED, not read whole (a stream may never end)", async (t) => {
  const { url } = await serve(t, (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("data: first\n\n"); // and never ends
  });
  const client = new Client({ gateway: url });
  t.after(() => client.close());
  await assert.rejects(client.callEndpoint("chat", {}), (err: ApiError) =>
    err.code === "STREAMED" && /POST \/endpoint\/chat answered a stream \(text\/event-stream\), not a JSON result; read it with fetch\(\)/.test(err.message));
});

test("a call that waits on readiness (warming a pod) has no answer timeout; others fail with a message that says the gateway was slow", async (t) => {
  const { url } = await serve(t, (_req, res) => setTimeout(() => json(res, 200, { deploymentId: "d", stubId: "s", containerId: "c" }), 2500));
  // undici times answers on a coarse clock (about 1 s): the answer comes well after the limit.
  const client = new Client({ gateway: url, token: "t", answerTimeoutMs: 300 });
  t.after(() => client.close());
  const { warmDeployment } = await import("./index.js");
  assert.deepEqual(await warmDeployment(client, "d"), { deploymentId: "d", stubId: "s", containerId: "c" });
  await assert.rejects(client.request("GET", "/stub"), (err: unknown) =>
    err instanceof ApiError && err.code === "UNREACHABLE" && /accepted GET \/stub but did not answer in time/.test(err.message));
});
