/**
 * A function's handler error reaches its caller as an endpoint's does: the message, and the
 * handler's stack for a caller with a token (not for an anonymous caller of a public function).
 * Real gateway; a stand-in worker over the real worker socket whose container is a real HTTP
 * runner on loopback answering the batch protocol.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { RUNNER_PORT, WORKER_CONNECT_PATH, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "../server.js";
import { makeTar, sha256 } from "../testing/tar.js";
import { callApi } from "../testing/wait.js";

const STACK = "Error: boom\n    at square (app.ts:7:11)";
let gw: RunningGateway;
let admin: string;
let runner: Server;
let ws: WebSocket | undefined;
const dir = mkdtempSync(join(tmpdir(), "beta9-fn-errors-"));

before(async () => {
  // Every task fails with the same stack, as a runner answers a thrown Error.
  runner = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      if (req.url === "/health") return void res.end("{}");
      const failure = { error: { code: "HANDLER_ERROR", message: "boom", stack: STACK } };
      // A task alone goes to /invoke; several at once to /invoke-batch.
      if (req.url === "/invoke") {
        res.writeHead(500, { "content-type": "application/json" });
        return void res.end(JSON.stringify(failure));
      }
      const tasks = (JSON.parse(body) as { tasks: { id: string }[] }).tasks;
      res.setHeader("content-type", "application/x-ndjson");
      res.end(tasks.map((t) => `${JSON.stringify({ id: t.id, status: 500, body: failure })}\n`).join(""));
    });
  });
  await new Promise<void>((r) => runner.listen(0, "127.0.0.1", r));
  const runnerPort = (runner.address() as { port: number }).port;
  gw = await startGateway({ dataDir: dir, port: 0, logLevel: "warn" });
  admin = gw.bootstrap!.token.key;
  const key = (await callApi(gw.url, admin, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  ws = new WebSocket(gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH, { headers: { authorization: `Bearer ${key}` } });
  const send = (m: WorkerMessage) => ws!.send(JSON.stringify(m));
  ws.on("message", (d) => {
    const m = JSON.parse(String(d)) as GatewayMessage;
    if (m.type === "container.run") send({ type: "container.state", containerId: m.request.containerId, state: "RUNNING", ports: { [String(RUNNER_PORT)]: { host: "127.0.0.1", port: runnerPort } } });
    if (m.type === "container.stop") send({ type: "container.state", containerId: m.containerId, state: "EXITED", exitCode: 0, reason: "stopped" });
  });
  await new Promise((r) => ws!.once("open", r));
  send({ type: "hello", workerId: "w", hostname: "w", pool: "default", runtime: "runc", isolates: true, capacity: { cpuMillicores: 4000, memoryMiB: 4096, gpus: [] }, containers: [], version: "test" });
});
after(async () => {
  ws?.terminate();
  await gw.close();
  runner.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a function's handler error carries the stack to a caller with a token, and only the message to an anonymous one", async () => {
  const api = (method: string, path: string, body?: unknown) => callApi(gw.url, admin, method, path, body);
  const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }]);
  await fetch(`${gw.url}/api/v1/object/${sha256(bundle)}`, { method: "PUT", body: bundle, headers: { authorization: `Bearer ${admin}`, "content-type": "application/octet-stream" } });
  const stub = (await api("POST", "/api/v1/stub", { name: "square", type: "function/deployment", objectId: sha256(bundle), config: { handler: "app.js:x", authorized: false, taskPolicy: { maxRetries: 0 } } })).json.stub as { id: string };
  assert.equal((await api("POST", "/api/v1/deployment", { stubId: stub.id })).status, 201);

  const called = await api("POST", "/function/square", {});
  assert.equal(called.status, 500);
  assert.equal(called.json.error.code, "HANDLER_ERROR");
  assert.match(called.json.error.message, /ended ERROR: boom/);
  assert.equal(called.json.error.details?.stack, STACK);

  const anonymous = await fetch(`${gw.url}/public/${stub.id}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  const body = (await anonymous.json()) as { error: { code: string; details?: unknown } };
  assert.deepEqual([anonymous.status, body.error.code, body.error.details], [500, "HANDLER_ERROR", undefined]);
});
