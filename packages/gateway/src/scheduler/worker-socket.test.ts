/** The worker endpoint over a real socket: who may connect, and the hello → run → state → logs flow. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { WORKER_CONNECT_PATH, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "../server.js";
import { callApi } from "../testing/wait.js";

let gw: RunningGateway;
let admin: string;
const dir = mkdtempSync(join(tmpdir(), "beta9-wsock-"));
before(async () => {
  gw = await startGateway({ dataDir: dir, port: 0, logLevel: "silent", workerTimeoutMs: 500 });
  admin = gw.bootstrap!.token.key;
});
after(async () => {
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

const wsUrl = () => gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH;

function refusedStatus(headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(), { headers });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on("open", () => reject(new Error("connected without a valid worker token")));
    ws.on("error", () => undefined);
  });
}

const api = (method: string, path: string, body?: unknown, key = admin) => callApi(gw.url, key, method, path, body);

test("no token, a wrong token, or a workspace/restricted/machine token cannot connect as a worker", async () => {
  assert.equal(await refusedStatus({}), 401);
  assert.equal(await refusedStatus({ authorization: "Bearer b9_nope" }), 401);
  for (const type of ["workspace", "restricted", "machine"]) {
    const key = (await api("POST", "/api/v1/token", { type })).json.key as string;
    assert.equal(await refusedStatus({ authorization: `Bearer ${key}` }), 403, type);
  }
});

test("hello, placement, state and logs flow through; silence drops the worker and loses its containers", async () => {
  const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const ws = new WebSocket(wsUrl(), { headers: { authorization: `Bearer ${key}` } });
  const inbox: GatewayMessage[] = [];
  ws.on("message", (d) => inbox.push(JSON.parse(String(d)) as GatewayMessage));
  await new Promise((r) => ws.once("open", r));
  const send = (m: WorkerMessage) => ws.send(JSON.stringify(m));
  const next = async (type: GatewayMessage["type"]) => {
    for (let i = 0; i < 400; i++) {
      const idx = inbox.findIndex((m) => m.type === type);
      if (idx !== -1) return inbox.splice(idx, 1)[0]!;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no ${type} message`);
  };
  send({ type: "hello", workerId: "w1", hostname: "h", pool: "default", runtime: "process", isolates: false, allowUnisolated: true, capacity: { cpuMillicores: 2000, memoryMiB: 2048, gpus: [] }, containers: [], version: "test" });
  assert.equal((await next("welcome")).type, "welcome");
  const workers = (await api("GET", "/api/v1/worker")).json.items;
  assert.deepEqual(workers.map((w: { id: string; free: { cpuMillicores: number } }) => [w.id, w.free.cpuMillicores]), [["w1", 2000]]);

  const created = (await api("POST", "/api/v1/container", { command: ["echo", "hi"], cpu: 1 })).json;
  const run = await next("container.run");
  assert.equal(run.type === "container.run" && run.request.containerId, created.id);
  send({ type: "container.state", containerId: created.id, state: "RUNNING", ports: {} });
  send({ type: "container.logs", containerId: created.id, lines: [{ stream: "stdout", line: "hi", at: Date.now() }] });
  send({ type: "container.state", containerId: created.id, state: "EXITED", exitCode: 0, reason: "exited" });
  for (let i = 0; i < 100 && (await api("GET", `/api/v1/container/${created.id}`)).json.state !== "EXITED"; i++) await new Promise((r) => setTimeout(r, 10));
  const done = (await api("GET", `/api/v1/container/${created.id}`)).json;
  assert.deepEqual([done.state, done.exitCode, done.reason, done.workerId], ["EXITED", 0, "exited", "w1"]);
  assert.deepEqual((await api("GET", `/api/v1/container/${created.id}/logs`)).json.items.map((l: { line: string }) => l.line), ["hi"]);

  const running = (await api("POST", "/api/v1/container", { command: ["sleep", "100"], cpu: 1 })).json;
  await next("container.run");
  send({ type: "container.state", containerId: running.id, state: "RUNNING" });
  ws.terminate(); // no close frame, then silence: the worker must time out (500 ms here)
  for (let i = 0; i < 300 && (await api("GET", `/api/v1/container/${running.id}`)).json.state !== "EXITED"; i++) await new Promise((r) => setTimeout(r, 10));
  const lost = (await api("GET", `/api/v1/container/${running.id}`)).json;
  assert.deepEqual([lost.state, lost.reason], ["EXITED", "worker_lost"]);
  assert.deepEqual((await api("GET", "/api/v1/worker")).json.items, []);
});

test("revoking a token closes its live sockets at once: a worker connection and an event stream", async () => {
  const worker = (await api("POST", "/api/v1/token", { type: "worker" })).json as { id: string; key: string };
  const ws = new WebSocket(wsUrl(), { headers: { authorization: `Bearer ${worker.key}` } });
  await new Promise((r) => ws.once("open", r));
  ws.send(JSON.stringify({ type: "hello", workerId: "revoked-w", hostname: "h", pool: "default", runtime: "runc", isolates: true, capacity: { cpuMillicores: 1000, memoryMiB: 1024, gpus: [] }, containers: [], version: "test" } satisfies WorkerMessage));
  await new Promise((r) => ws.once("message", r)); // welcome
  const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));

  const reader = (await api("POST", "/api/v1/token", { type: "workspace" })).json as { id: string; key: string };
  const container = (await api("POST", "/api/v1/container", { command: ["sleep", "60"] })).json as { id: string };
  const res = await fetch(`${gw.url}/api/v1/container/${container.id}/logs?follow=true`, { headers: { authorization: `Bearer ${reader.key}` } });
  assert.equal(res.status, 200);
  const body = res.body!.getReader();
  const ended = (async () => {
    try {
      while (!(await body.read()).done) { /* events until the stream ends */ }
      return "ended";
    } catch {
      return "ended";
    }
  })();

  // The stream first, while its container is still alive on the connected worker: only the revocation can end it.
  assert.equal((await api("DELETE", `/api/v1/token/${reader.id}`)).status, 200);
  assert.equal(await ended, "ended", "the follow stream of the revoked token ended");
  assert.equal(ws.readyState, WebSocket.OPEN, "another token's socket is untouched");
  assert.equal((await api("DELETE", `/api/v1/token/${worker.id}`)).status, 200);
  assert.equal(await closed, 4002, "the worker's socket closed with 'token revoked'");
  await api("POST", `/api/v1/container/${container.id}/stop`);
});
