/**
 * What a worker may not make the gateway do, over real sockets: a machine token's worker (a host
 * some workspace user joined) speaks the ordinary protocol, so malformed messages, state reports of
 * containers it does not run, containers of another workspace in its hello, image builds and
 * results, and "reachable" addresses it chooses are all checked.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { WORKER_CONNECT_PATH, type ContainerRequest, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "../server.js";
import { isInternalAddress, machineMayRouteTo } from "./worker-trust.js";
import { until, callApi } from "../testing/wait.js";

let gw: RunningGateway;
let admin: string;
const dir = mkdtempSync(join(tmpdir(), "beta9-wtrust-"));
before(async () => {
  gw = await startGateway({ dataDir: dir, port: 0, logLevel: "silent", workerTimeoutMs: 5000 });
  admin = gw.bootstrap!.token.key;
});
after(async () => {
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = (method: string, path: string, body?: unknown, key = admin) => callApi(gw.url, key, method, path, body);


const CAPACITY = { cpuMillicores: 4000, memoryMiB: 4096, gpus: [] };

/** A worker that does nothing by itself: the test sends what it reports. */
class RawWorker {
  readonly inbox: GatewayMessage[] = [];
  ws!: WebSocket;
  closed: Promise<{ code: number; reason: string }>;
  private resolveClosed!: (v: { code: number; reason: string }) => void;

  constructor(private readonly key: string) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  async open(): Promise<this> {
    this.ws = new WebSocket(gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH, { headers: { authorization: `Bearer ${this.key}` } });
    this.ws.on("message", (d) => this.inbox.push(JSON.parse(String(d)) as GatewayMessage));
    this.ws.on("close", (code, reason) => this.resolveClosed({ code, reason: String(reason) }));
    await new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
    return this;
  }

  send(message: WorkerMessage | Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  async hello(extra: Partial<WorkerMessage & { type: "hello" }> = {}): Promise<string> {
    this.send({ type: "hello", workerId: "w", hostname: "h", pool: "default", runtime: "process", isolates: false, allowUnisolated: true, capacity: CAPACITY, containers: [], version: "test", ...extra });
    const welcome = await this.next("welcome");
    return welcome.type === "welcome" ? welcome.workerId : "";
  }

  async next<K extends GatewayMessage["type"]>(type: K, ms = 5000): Promise<GatewayMessage & { type: K }> {
    return until(type, () => {
      const i = this.inbox.findIndex((m) => m.type === type);
      return i === -1 ? undefined : (this.inbox.splice(i, 1)[0] as GatewayMessage & { type: K });
    }, ms);
  }
}

async function machine(pool: string): Promise<{ id: string; token: string }> {
  if ((await api("GET", `/api/v1/pool`)).json.items?.some((p: { name: string }) => p.name === pool) !== true) {
    await api("POST", "/api/v1/pool", { name: pool });
  }
  const created = await api("POST", "/api/v1/machine", { pool });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  return { id: created.json.machine.id, token: created.json.token };
}

function request(containerId: string, workspaceId: string, extra: Partial<ContainerRequest> = {}): ContainerRequest {
  return {
    containerId, workspaceId, stubId: null, imageId: null, command: ["serve"], env: {}, cpuMillicores: 100, memoryMiB: 64, gpu: [],
    gpuCount: 0, ports: [], pool: null, ...extra,
  };
}

const listeners = () => process.getActiveResourcesInfo().filter((r) => r === "TCPServerWrap").length;

test("a malformed message closes the worker's connection with 4003 and a clear error; the gateway keeps serving", async () => {
  const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const w = await new RawWorker(key).open();
  w.send({ type: "hello", workerId: "bad", hostname: "h", pool: "default", runtime: "process", isolates: false, allowUnisolated: true, capacity: null, containers: [], version: "x" });
  const error = await w.next("error");
  assert.equal(error.code, "BAD_REQUEST");
  assert.match(error.message, /hello.*capacity/);
  assert.equal((await w.closed).code, 4003);
  const workers = await api("GET", "/api/v1/worker");
  assert.equal(workers.status, 200, JSON.stringify(workers.json));
  assert.equal(workers.json.items.some((x: { id: string }) => x.id === "bad"), false);

  // After a good hello, a bad message closes too; an unknown type is only answered.
  const w2 = await new RawWorker(key).open();
  await w2.hello({ workerId: "good" });
  w2.send({ type: "future.thing" });
  assert.match((await w2.next("error")).message, /unknown message type/);
  w2.send({ type: "container.state", containerId: 42, state: "RUNNING" });
  assert.match((await w2.next("error")).message, /container.state.*containerId/);
  assert.equal((await w2.closed).code, 4003);
});

test("state reports count only for containers placed on this worker, and only for the ports they asked for", async () => {
  const a = await machine("trust-a");
  const b = await machine("trust-b");
  const wa = await new RawWorker(a.token).open();
  await wa.hello();
  const wb = await new RawWorker(b.token).open();
  await wb.hello();
  const run = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "trust-a" });
  assert.equal(run.status, 201, JSON.stringify(run.json));
  const placed = await wa.next("container.run");
  const id = placed.request.containerId;
  wa.send({ type: "container.state", containerId: id, state: "RUNNING", ports: { "8000": { host: "127.0.0.1", port: 1 }, "9999": { host: "127.0.0.1", port: 2 } } });
  const running = await until("RUNNING", async () => {
    const c = (await api("GET", `/api/v1/container/${id}`)).json;
    return c.state === "RUNNING" ? c : undefined;
  });
  assert.deepEqual(Object.keys(running.ports), ["8000"], "a port the request did not ask for is not exposed");
  const tunnel = running.ports["8000"];

  const before = listeners();
  // Another machine reports the same container (and one that does not exist) with many ports.
  const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [String(10_000 + i), { host: "127.0.0.1", port: 1 }]));
  wb.send({ type: "container.state", containerId: id, state: "RUNNING", ports: { ...many, "8000": { host: "127.0.0.1", port: 3 } } });
  wb.send({ type: "container.state", containerId: "made-up", state: "RUNNING", ports: many });
  wb.send({ type: "container.state", containerId: id, state: "EXITED", exitCode: 0, reason: "exited" });
  wb.send({ type: "keepalive", running: 0 });
  await sleep(300);
  assert.ok(listeners() - before < 5, `no listener per reported port (${listeners() - before} opened)`);
  const after = (await api("GET", `/api/v1/container/${id}`)).json;
  assert.equal(after.state, "RUNNING", "another worker cannot end it");
  assert.deepEqual(after.ports["8000"], tunnel, "nor replace its tunnel");
  wa.ws.close();
  wb.ws.close();
});

test("a machine's hello cannot bring in another workspace's containers, nor end or reroute a sandbox it does not run", async () => {
  const victim = (await api("POST", "/api/v1/workspace", { name: "victim-ws" })).json;
  const vkey = victim.token.key as string;
  const sandbox = await api("POST", "/api/v1/sandbox", {}, vkey);
  assert.equal(sandbox.status, 201, JSON.stringify(sandbox.json));
  const sandboxId = sandbox.json.id as string;
  const adminWs = gw.bootstrap!.workspace.id;
  const env = { BETA9_SANDBOX_ID: sandboxId };

  const m = await machine("trust-c");
  const w = await new RawWorker(m.token).open();
  await w.hello({
    containers: [
      // The victim's workspace, ended: would terminate the sandbox.
      { containerId: "forged-1", state: "EXITED", exitCode: 0, reason: "exited", request: request("forged-1", victim.workspace.id, { daemon: "sandbox", env, ports: [8000] }) },
      // The victim's workspace, running: adopted, it would be another workspace's container on this machine.
      { containerId: "forged-2", state: "RUNNING", ports: {}, request: request("forged-2", victim.workspace.id, { daemon: "sandbox", env, ports: [8000] }) },
      // Its own workspace, but naming the victim's sandbox.
      { containerId: "forged-3", state: "EXITED", exitCode: 0, reason: "exited", request: request("forged-3", adminWs, { daemon: "sandbox", env, ports: [8000] }) },
      // Its own workspace, running as the victim's sandbox (after a gateway restart): would take its traffic.
      { containerId: "forged-4", state: "RUNNING", ports: { "8000": { host: "127.0.0.1", port: 1 } }, request: request("forged-4", adminWs, { daemon: "sandbox", env, ports: [8000] }) },
    ],
  });
  const stops = [(await w.next("container.stop")).containerId, (await w.next("container.stop")).containerId].sort();
  assert.deepEqual(stops, ["forged-2", "forged-4"], "refused running containers are stopped on the machine");
  await sleep(300);
  assert.equal((await api("GET", "/api/v1/container/forged-1", undefined, vkey)).status, 404);
  assert.equal((await api("GET", "/api/v1/container/forged-2", undefined, vkey)).status, 404);
  const sb = (await api("GET", `/api/v1/sandbox/${sandboxId}`, undefined, vkey)).json;
  assert.equal(sb.state, "PENDING", `the victim's sandbox is untouched (${JSON.stringify(sb)})`);
  w.ws.close();
  assert.equal((await api("POST", `/api/v1/sandbox/${sandboxId}/terminate`, undefined, vkey)).status, 200);
});

test("a machine says it is reachable: only its own, public address is dialled directly; cluster workers keep theirs", () => {
  assert.equal(machineMayRouteTo({ host: "169.254.169.254", port: 80 }, "203.0.113.5"), false);
  assert.equal(machineMayRouteTo({ host: "203.0.113.5", port: 80 }, "203.0.113.5"), true);
  assert.equal(machineMayRouteTo({ host: "203.0.113.5", port: 80 }, "::ffff:203.0.113.5"), true);
  assert.equal(machineMayRouteTo({ host: "127.0.0.1", port: 80 }, "127.0.0.1"), false);
  assert.equal(machineMayRouteTo({ host: "metadata.google.internal", port: 80 }, "203.0.113.5"), false);
  for (const a of ["127.0.0.1", "::1", "::", "0.0.0.0", "169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "::ffff:127.0.0.1"]) assert.ok(isInternalAddress(a), a);
  for (const a of ["203.0.113.5", "10.0.0.4", "2001:db8::1"]) assert.ok(!isInternalAddress(a), a);
});

test("over the socket: a reachable machine's metadata address is tunnelled, a cluster worker's address is used as is", async () => {
  const m = await machine("trust-d");
  const w = await new RawWorker(m.token).open();
  await w.hello({ reachable: true });
  const run = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "trust-d" });
  const id = run.json.id as string;
  await until("placed", () => w.inbox.some((x) => x.type === "container.run" && x.request.containerId === id));
  w.send({ type: "container.state", containerId: id, state: "RUNNING", ports: { "8000": { host: "169.254.169.254", port: 80 } } });
  const c = await until("RUNNING", async () => {
    const x = (await api("GET", `/api/v1/container/${id}`)).json;
    return x.state === "RUNNING" ? x : undefined;
  });
  assert.equal(c.ports["8000"].host, "127.0.0.1", "the gateway's own tunnel listener, not the address the machine chose");
  assert.notEqual(c.ports["8000"].port, 80);
  w.ws.close();

  await api("POST", "/api/v1/pool", { name: "trust-cluster" });
  const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const cw = await new RawWorker(key).open();
  await cw.hello({ workerId: "cluster-d", pool: "trust-cluster" });
  const run2 = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "trust-cluster" });
  const id2 = run2.json.id as string;
  await until("placed", () => cw.inbox.some((x) => x.type === "container.run" && x.request.containerId === id2));
  cw.send({ type: "container.state", containerId: id2, state: "RUNNING", ports: { "8000": { host: "10.1.2.3", port: 30000 } } });
  const c2 = await until("RUNNING", async () => {
    const x = (await api("GET", `/api/v1/container/${id2}`)).json;
    return x.state === "RUNNING" ? x : undefined;
  });
  assert.deepEqual(c2.ports["8000"], { host: "10.1.2.3", port: 30000 });
  cw.ws.close();
});

test("image builds go to cluster workers only; results count only from the worker the build was sent to", async () => {
  const m = await machine("trust-e");
  const w = await new RawWorker(m.token).open();
  await w.hello();
  const spec = { spec: { base: { kind: "default" }, steps: [{ kind: "shell", command: "echo trust" }], env: {} } };
  const built = await api("POST", "/api/v1/image/build", spec);
  assert.ok(built.status < 300, JSON.stringify(built.json));
  const imageId = built.json.id as string;
  await sleep(700);
  assert.equal(w.inbox.some((x) => x.type === "image.build"), false, "a machine is never asked to build a shared image");

  const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const cw = await new RawWorker(key).open();
  await cw.hello({ workerId: "cluster-e", pool: "trust-cluster" });
  const build = await cw.next("image.build");
  assert.equal(build.imageId, imageId);
  // The machine claims the result: ignored.
  w.send({ type: "image.logs", imageId, lines: [{ stream: "stdout", line: "forged", at: Date.now() }] });
  w.send({ type: "image.result", imageId, ok: false, error: "forged failure" });
  await sleep(300);
  const image = (await api("GET", `/api/v1/image/${imageId}`)).json;
  assert.equal(image.status, "building", JSON.stringify(image));
  cw.send({ type: "image.result", imageId, ok: false, error: "real failure" });
  const failed = await until("failed", async () => {
    const x = (await api("GET", `/api/v1/image/${imageId}`)).json;
    return x.status === "failed" ? x : undefined;
  });
  assert.match(JSON.stringify(failed), /real failure/);
  w.ws.close();
  cw.ws.close();
});
