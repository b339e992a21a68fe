/**
 * Machine workers on a real gateway socket: a machine token makes the worker that machine (id and
 * pool forced), container ports are reached through tunnels over the worker's own connections,
 * and cordon, drain and delete reach the scheduler. The worker here speaks the protocol with raw
 * WebSockets; the real worker does the same in the CLI's netns tests (machines-e2e.test.ts).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, get as httpGet, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket, { createWebSocketStream } from "ws";
import {
  TUNNEL_MUX_STREAM, TunnelMux, WORKER_CONNECT_PATH, WORKER_TUNNEL_PATH, type ContainerRequest, type GatewayMessage, type WorkerMessage,
} from "@beta9/protocol";
import { startGateway, type RunningGateway } from "../server.js";
import { makeTar, sha256 } from "../testing/tar.js";
import { until, callApi } from "../testing/wait.js";

let gw: RunningGateway;
let admin: string;
let upstream: Server;
let upstreamPort: number;
const dir = mkdtempSync(join(tmpdir(), "beta9-tunnels-"));

before(async () => {
  gw = await startGateway({ dataDir: dir, port: 0, logLevel: "silent", workerTimeoutMs: 2000 });
  admin = gw.bootstrap!.token.key;
  // The "container": echoes what it is sent, with its sha256, so large bodies can be checked.
  upstream = createServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on("end", () => res.end(JSON.stringify({ path: req.url, bytes, sha256: hash.digest("hex") })));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  upstreamPort = (upstream.address() as AddressInfo).port;
});
after(async () => {
  await gw.close();
  upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = (method: string, path: string, body?: unknown, key = admin) => callApi(gw.url, key, method, path, body);


/** A worker that runs nothing but reports every container RUNNING on the upstream server's port. */
class FakeMachineWorker {
  readonly messages: GatewayMessage[] = [];
  readonly requests: ContainerRequest[] = [];
  ws!: WebSocket;
  failTunnels = false;
  tunnelsOpened = 0;
  /** Streams as channels of one multiplexed socket (what the real worker does) instead of a socket each. */
  mux = false;
  muxSockets = 0;
  private muxed?: Promise<TunnelMux>;
  private nextChannel = 1;

  constructor(private readonly token: string) {}

  async connect(): Promise<GatewayMessage & { type: "welcome" }> {
    this.ws = new WebSocket(gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH, { headers: { authorization: `Bearer ${this.token}` } });
    this.ws.on("message", (data) => this.onMessage(JSON.parse(String(data)) as GatewayMessage));
    await new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
    this.send({
      type: "hello", workerId: "claims-another-id", hostname: "fake", pool: "claims-another-pool", runtime: "process", isolates: false, allowUnisolated: true,
      capacity: { cpuMillicores: 4000, memoryMiB: 4096, gpus: [] }, containers: [], version: "test",
    });
    return until("welcome", () => this.messages.find((m): m is GatewayMessage & { type: "welcome" } => m.type === "welcome"));
  }

  /** The multiplexed tunnel socket, opened once. */
  private openMux(): Promise<TunnelMux> {
    this.muxed ??= new Promise<TunnelMux>((resolve, reject) => {
      const ws = new WebSocket(`${gw.url.replace("http:", "ws:")}${WORKER_TUNNEL_PATH}/${TUNNEL_MUX_STREAM}`, { headers: { authorization: `Bearer ${this.token}` } });
      const mux = new TunnelMux({ send: (data, done) => ws.send(data, { binary: true }, done) });
      ws.on("message", (data, isBinary) => isBinary && mux.receive(data as Buffer));
      ws.on("close", () => mux.close());
      ws.once("open", () => {
        this.muxSockets += 1;
        resolve(mux);
      });
      ws.once("error", reject);
    });
    return this.muxed;
  }

  send(message: WorkerMessage): void {
    this.ws.send(JSON.stringify(message));
  }

  private onMessage(message: GatewayMessage): void {
    this.messages.push(message);
    if (message.type === "container.run") {
      this.requests.push(message.request);
      const ports = Object.fromEntries(message.request.ports.map((p) => [String(p), { host: "127.0.0.1", port: upstreamPort }]));
      this.send({ type: "container.state", containerId: message.request.containerId, state: "RUNNING", ports });
    } else if (message.type === "container.stop") {
      this.send({ type: "container.state", containerId: message.containerId, state: "EXITED", exitCode: 0, reason: "stopped" });
    } else if (message.type === "tunnel.open") {
      if (this.failTunnels) {
        this.send({ type: "tunnel.failed", streamId: message.streamId, message: "refused on purpose" });
        return;
      }
      if (this.mux) {
        const socket = connect(upstreamPort, "127.0.0.1", () => {
          socket.pause();
          void this.openMux().then((mux) => {
            const channel = this.nextChannel++;
            this.tunnelsOpened += 1;
            mux.open(channel, message.streamId);
            mux.bind(channel, socket);
          });
        });
        return;
      }
      const socket = connect(upstreamPort, "127.0.0.1", () => {
        const ws = new WebSocket(`${gw.url.replace("http:", "ws:")}${WORKER_TUNNEL_PATH}/${message.streamId}`, { headers: { authorization: `Bearer ${this.token}` } });
        const stream = createWebSocketStream(ws);
        this.tunnelsOpened += 1;
        socket.pipe(stream).pipe(socket);
        socket.on("close", () => stream.end());
        stream.on("error", () => socket.destroy());
      });
    }
  }
}

let machine: { id: string; token: string };
let worker: FakeMachineWorker;

test("a machine token connects as that machine: id and pool are forced", async () => {
  assert.equal((await api("POST", "/api/v1/pool", { name: "edge" })).status, 201);
  const created = await api("POST", "/api/v1/machine", { pool: "edge" });
  machine = { id: created.json.machine.id, token: created.json.token };
  worker = new FakeMachineWorker(machine.token);
  const welcome = await worker.connect();
  assert.equal(welcome.workerId, machine.id);
  const listed = (await api("GET", "/api/v1/worker")).json.items.find((w: { id: string }) => w.id === machine.id);
  assert.equal(listed.pool, "edge");
  const m = (await api("GET", `/api/v1/machine/${machine.id}`)).json;
  assert.equal(m.workerConnected, true);
});

let containerId: string;
let tunnelPort: number;

test("container ports of a machine worker are tunnelled: the gateway dials a loopback listener, not the worker", async () => {
  const run = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "edge" });
  assert.equal(run.status, 201, JSON.stringify(run.json));
  containerId = run.json.id;
  const running = await until("RUNNING", async () => {
    const c = (await api("GET", `/api/v1/container/${containerId}`)).json;
    return c.state === "RUNNING" ? c : undefined;
  });
  assert.equal(running.workerId, machine.id);
  assert.equal(running.ports["8000"].host, "127.0.0.1");
  tunnelPort = running.ports["8000"].port;
  assert.notEqual(tunnelPort, upstreamPort, "the reported address is rewritten to the gateway's listener");

  const res = await fetch(`http://127.0.0.1:${tunnelPort}/hello`);
  assert.deepEqual(await res.json(), { path: "/hello", bytes: 0, sha256: createHash("sha256").digest("hex") });
  assert.ok(worker.tunnelsOpened >= 1, "the bytes went through a tunnel the worker opened");
});

test("large bodies and concurrent requests cross the tunnel intact", async () => {
  const body = randomBytes(8 * 1024 * 1024);
  const res = await fetch(`http://127.0.0.1:${tunnelPort}/big`, { method: "POST", body });
  const echoed = (await res.json()) as { bytes: number; sha256: string };
  assert.equal(echoed.bytes, body.length);
  assert.equal(echoed.sha256, createHash("sha256").update(body).digest("hex"));
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`http://127.0.0.1:${tunnelPort}/n${i}`).then((r) => r.json())));
  assert.deepEqual(answers.map((a) => (a as { path: string }).path), Array.from({ length: 20 }, (_, i) => `/n${i}`));
});

test("multiplexed: every connection is a channel of the worker's one tunnel socket, large bodies included", async () => {
  worker.mux = true;
  try {
    const before = worker.tunnelsOpened;
    const body = randomBytes(8 * 1024 * 1024);
    const res = await fetch(`http://127.0.0.1:${tunnelPort}/big`, { method: "POST", body });
    const echoed = (await res.json()) as { bytes: number; sha256: string };
    assert.equal(echoed.bytes, body.length);
    assert.equal(echoed.sha256, createHash("sha256").update(body).digest("hex"));
    // A fresh connection each (no agent, no keep-alive), all at once.
    const get = (path: string) => new Promise<unknown>((resolve, reject) => {
      httpGet({ host: "127.0.0.1", port: tunnelPort, path, agent: false }, (r) => {
        let text = "";
        r.on("data", (d: Buffer) => (text += String(d)));
        r.on("end", () => resolve(JSON.parse(text)));
      }).on("error", reject);
    });
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => get(`/m${i}`)));
    assert.deepEqual(answers.map((a) => (a as { path: string }).path), Array.from({ length: 30 }, (_, i) => `/m${i}`));
    assert.ok(worker.tunnelsOpened - before >= 30, "each connection opened a channel");
    assert.equal(worker.muxSockets, 1, "over one socket");
  } finally {
    worker.mux = false;
  }
});

test("a stream the worker cannot open, or a tunnel socket with another token, fails cleanly", async () => {
  worker.failTunnels = true;
  // A fresh connection (fetch would reuse a pooled one): closed without a byte.
  const answer = await new Promise<string>((resolve) => {
    let got = "";
    const socket = connect(tunnelPort, "127.0.0.1", () => socket.write("GET /x HTTP/1.1\r\nhost: x\r\n\r\n"));
    socket.on("data", (d) => (got += String(d)));
    socket.on("close", () => resolve(got));
    socket.on("error", () => undefined); // closed or reset: either way, nothing came back
  });
  assert.equal(answer, "");
  worker.failTunnels = false;
  const other = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
  const status = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${gw.url.replace("http:", "ws:")}${WORKER_TUNNEL_PATH}/not-a-stream`, { headers: { authorization: `Bearer ${other}` } });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", () => undefined);
  });
  assert.equal(status, 404);
});

test("a machine runs only its own workspace's containers", async () => {
  const other = (await api("POST", "/api/v1/workspace", { name: "other-tenant" })).json;
  const key = other.token.key as string;
  const run = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "edge" }, key);
  assert.equal(run.status, 201, JSON.stringify(run.json));
  await sleep(200);
  const c = (await api("GET", `/api/v1/container/${run.json.id}`, undefined, key)).json;
  assert.equal(c.workerId, null, "another workspace's container waits for a worker it may use");
  assert.equal((await api("POST", `/api/v1/container/${run.json.id}/stop`, undefined, key)).status, 200);
});

test("a machine token fetches code of its own workspace only", async () => {
  const put = async (bytes: Buffer, key: string) => (await fetch(`${gw.url}/api/v1/object/${sha256(bytes)}`, {
    method: "PUT", headers: { authorization: `Bearer ${key}`, "content-type": "application/octet-stream" }, body: bytes,
  })).status;
  const mine = makeTar([{ name: "mine.js", data: "export const a = 1;\n" }], { gzip: true });
  const theirs = makeTar([{ name: "theirs.js", data: "export const b = 2;\n" }], { gzip: true });
  const other = (await api("POST", "/api/v1/workspace", { name: "code-owner" })).json.token.key as string;
  assert.ok([200, 201].includes(await put(mine, admin)));
  assert.ok([200, 201].includes(await put(theirs, other)));
  const get = async (bytes: Buffer) => (await fetch(`${gw.url}/api/v1/worker/object/${sha256(bytes)}`, { headers: { authorization: `Bearer ${machine.token}` } })).status;
  assert.equal(await get(mine), 200);
  assert.equal(await get(theirs), 404);
});

test("cordon: nothing new is placed; drain: its containers are stopped; uncordon: placement resumes", async () => {
  assert.equal((await api("POST", `/api/v1/machine/${machine.id}/cordon`)).status, 200);
  const held = await api("POST", "/api/v1/container", { command: ["serve"], ports: [8000], pool: "edge" });
  await sleep(200);
  assert.equal((await api("GET", `/api/v1/container/${held.json.id}`)).json.workerId, null, "a cordoned machine gets nothing new");

  const drained = await api("POST", `/api/v1/machine/${machine.id}/drain`);
  assert.equal(drained.json.stopped, 1);
  assert.ok(worker.messages.some((m) => m.type === "container.stop" && m.containerId === containerId));
  await until("EXITED", async () => (await api("GET", `/api/v1/container/${containerId}`)).json.state === "EXITED" || undefined);
  // The exited container's listener is gone.
  await assert.rejects(fetch(`http://127.0.0.1:${tunnelPort}/gone`));

  assert.equal((await api("POST", `/api/v1/machine/${machine.id}/uncordon`)).status, 200);
  const placed = await until("placed", async () => (await api("GET", `/api/v1/container/${held.json.id}`)).json.workerId ?? undefined);
  assert.equal(placed, machine.id);
});

test("a cordon is kept in the store: the machine's worker comes back cordoned after a reconnect", async () => {
  assert.equal((await api("POST", `/api/v1/machine/${machine.id}/cordon`)).status, 200);
  const again = new FakeMachineWorker(machine.token);
  await again.connect(); // replaces the first connection
  const listed = (await api("GET", "/api/v1/worker")).json.items.find((w: { id: string }) => w.id === machine.id);
  assert.equal(listed.cordoned, true);
  assert.equal((await api("POST", `/api/v1/machine/${machine.id}/uncordon`)).status, 200);
  again.ws.close();
  worker = new FakeMachineWorker(machine.token);
  await worker.connect();
});

test("delete revokes the token and disconnects the worker; it cannot come back", async () => {
  const closed = new Promise<number>((resolve) => worker.ws.once("close", (code) => resolve(code)));
  assert.equal((await api("DELETE", `/api/v1/machine/${machine.id}`)).status, 200);
  assert.equal(await closed, 4002);
  assert.equal((await api("GET", "/api/v1/worker")).json.items.some((w: { id: string }) => w.id === machine.id), false);
  await assert.rejects(new FakeMachineWorker(machine.token).connect());
});
