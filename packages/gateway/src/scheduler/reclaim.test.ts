/**
 * Waiting work before idle warmth: the pure plan, then the real gateway with a stand-in worker
 * (over the real worker socket) whose containers are one real HTTP runner on loopback.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import WebSocket from "ws";
import { RUNNER_PORT, WORKER_CONNECT_PATH, type ContainerRequest, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import type { PlacementCandidate } from "./placement.js";
import { reclaimPlan, type IdleContainer } from "./reclaim.js";
import { ContainerRegistry } from "./containers.js";
import { Scheduler } from "./scheduler.js";
import { startGateway, type RunningGateway } from "../server.js";
import { makeTar, sha256 } from "../testing/tar.js";
import { callApi, until } from "../testing/wait.js";

describe("reclaimPlan", () => {
  const worker = (id: string, cpu: number, reserved: number): PlacementCandidate => ({
    workerId: id, pool: "default", schedulable: true, capacity: { cpuMillicores: cpu, memoryMiB: 4096, gpus: [] },
    reserved: { cpuMillicores: reserved, memoryMiB: 0, gpus: {} },
  });
  const idle = (id: string, workerId: string, cpu: number, lastUsedAt: number): IdleContainer => ({ id, workerId, cpuMillicores: cpu, memoryMiB: 0, gpuType: null, gpuCount: 0, lastUsedAt });
  const demand = { cpuMillicores: 1000, memoryMiB: 128, gpu: [], gpuCount: 0, pool: null };

  test("stops the longest idle first, only as many as make room, all on one worker", () => {
    const plan = reclaimPlan([worker("a", 2000, 2000)], [idle("new", "a", 500, 20), idle("old", "a", 500, 10), idle("older", "a", 500, 5)], demand);
    assert.deepEqual(plan, ["older", "old"]);
  });

  test("prefers the worker where fewer stops suffice", () => {
    const plan = reclaimPlan(
      [worker("a", 2000, 2000), worker("b", 2000, 1500)],
      [idle("a1", "a", 500, 1), idle("a2", "a", 500, 2), idle("b1", "b", 500, 9)],
      demand,
    );
    assert.deepEqual(plan, ["b1"]);
  });

  test("stops nothing when even every idle container would not make room", () => {
    assert.equal(reclaimPlan([worker("a", 2000, 2000)], [idle("x", "a", 250, 1)], demand), undefined);
    assert.equal(reclaimPlan([worker("a", 500, 0)], [], demand), undefined);
  });
});

describe("the scheduler's use of it", () => {
  test("only the waiting container's own workspace gives up idle containers", () => {
    const scheduler = new Scheduler(new ContainerRegistry(), { backlogRetryMs: 10_000 });
    try {
      const sent: GatewayMessage[] = [];
      scheduler.connect({
        id: "w", hostname: "w", pool: "default", runtime: "runc", isolates: true, capacity: { cpuMillicores: 2000, memoryMiB: 8192, gpus: [] },
        connected: true, cordoned: false, lastSeenAt: Date.now(), send: (m) => sent.push(m), close: () => undefined,
      }, []);
      const req = (workspaceId: string): ContainerRequest => ({
        containerId: randomUUID(), workspaceId, stubId: randomUUID(), imageId: null, command: ["true"], env: {},
        cpuMillicores: 1000, memoryMiB: 128, gpu: [], gpuCount: 0, ports: [], pool: null,
      });
      const mine = scheduler.submit(req("a"));
      const theirs = scheduler.submit(req("b"));
      const stopped: string[] = [];
      scheduler.setReclaimer({ idle: () => [{ id: mine.id, lastUsedAt: 1 }, { id: theirs.id, lastUsedAt: 2 }], stop: (id) => stopped.push(id) });
      scheduler.submit(req("b"));
      assert.deepEqual(stopped, [theirs.id], "b's own idle container, not a's (idle longer)");
      scheduler.submit(req("c"));
      assert.deepEqual(stopped, [theirs.id], "c has no idle container: nothing of a's or b's stops for it");
    } finally {
      scheduler.close();
    }
  });
});

describe("through the gateway", () => {
  let gw: RunningGateway;
  let admin: string;
  let runner: Server;
  let runnerPort = 0;
  let ws: WebSocket | undefined;
  const dir = mkdtempSync(join(tmpdir(), "beta9-reclaim-"));
  const logs: { msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      done();
    },
  });

  before(async () => {
    // Every container of the stand-in worker is this runner: healthy, and it answers each call.
    runner = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.end(req.url === "/health" ? "{}" : JSON.stringify({ result: "ok" }));
      });
    });
    await new Promise<void>((r) => runner.listen(0, "127.0.0.1", r));
    runnerPort = (runner.address() as { port: number }).port;
    gw = await startGateway({ dataDir: dir, port: 0, logger: pino({ level: "info" }, sink) });
    admin = gw.bootstrap!.token.key;
  });
  after(async () => {
    ws?.terminate();
    await gw.close();
    runner.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const api = (method: string, path: string, body?: unknown) => callApi(gw.url, admin, method, path, body);

  test("a call that finds no room stops another workload's idle warm container early, and is served", async () => {
    const key = (await api("POST", "/api/v1/token", { type: "worker" })).json.key as string;
    ws = new WebSocket(gw.url.replace("http:", "ws:") + WORKER_CONNECT_PATH, { headers: { authorization: `Bearer ${key}` } });
    const runs: ContainerRequest[] = [];
    const stops: string[] = [];
    const send = (m: WorkerMessage) => ws!.send(JSON.stringify(m));
    ws.on("message", (d) => {
      const m = JSON.parse(String(d)) as GatewayMessage;
      if (m.type === "container.run") {
        runs.push(m.request);
        send({ type: "container.state", containerId: m.request.containerId, state: "RUNNING", ports: { [String(RUNNER_PORT)]: { host: "127.0.0.1", port: runnerPort } } });
      }
      if (m.type === "container.stop") {
        stops.push(m.containerId);
        send({ type: "container.state", containerId: m.containerId, state: "EXITED", exitCode: 0, reason: "stopped" });
      }
    });
    await new Promise((r) => ws!.once("open", r));
    send({ type: "hello", workerId: "small", hostname: "small", pool: "default", runtime: "runc", isolates: true, capacity: { cpuMillicores: 1500, memoryMiB: 4096, gpus: [] }, containers: [], version: "test" });

    const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }]);
    await fetch(`${gw.url}/api/v1/object/${sha256(bundle)}`, { method: "PUT", body: bundle, headers: { authorization: `Bearer ${admin}`, "content-type": "application/octet-stream" } });
    const stub = async (name: string) => (await api("POST", "/api/v1/stub", { name, type: "endpoint/deployment", objectId: sha256(bundle), config: { handler: "app.js:x", cpu: 1, keepWarmSeconds: 600 } })).json.stub.id as string;
    const first = await stub("first");
    const second = await stub("second");

    assert.equal((await api("POST", `/endpoint/id/${first}`, {})).json, "ok");
    assert.equal(runs.length, 1);
    assert.deepEqual(stops, [], "idle, but nothing waits for its room: it stays warm");
    // 1000m of 1500m are held by the first workload's idle container: the second's call needs 1000m.
    assert.equal((await api("POST", `/endpoint/id/${second}`, {})).json, "ok");
    assert.deepEqual(stops, [runs[0]!.containerId], "the first workload's idle container made room");
    assert.deepEqual(runs.map((r) => r.stubId), [first, second]);
    assert.ok(logs.some((l) => l.msg === "second: stopping 1 idle warm container early to make room"), JSON.stringify(logs.map((l) => l.msg)));

    // A plain container is never stopped for room: with no idle workload container, the next call waits.
    await until("the first one's exit", async () => ((await api("GET", "/api/v1/container?active=true")).json.items as unknown[]).length === 1);
    await api("POST", `/api/v1/container/${runs[1]!.containerId}/stop`);
    await until("the second one's exit", async () => ((await api("GET", "/api/v1/container?active=true")).json.items as unknown[]).length === 0);
    await api("POST", "/api/v1/container", { command: ["sleep", "60"], cpu: "1000m" });
    await until("the plain container placed", () => runs.length === 3);
    void api("POST", `/endpoint/id/${first}`, {}).catch(() => undefined);
    await until("the call to wait for capacity", () => logs.some((l) => l.msg === "first: waiting for capacity: needs 1000m CPU, 500m free on 1 worker"));
    assert.equal(stops.length, 2, "only the container the test stopped itself; the plain one runs on");
  });
});
