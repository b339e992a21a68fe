/** Scheduler and placement behaviour, driven through in-memory workers (the socket is tested elsewhere). */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";
import type { ContainerRequest, GatewayMessage, WorkerCapacity } from "@beta9/protocol";
import { ContainerRegistry } from "./containers.js";
import { Writable } from "node:stream";
import { pino } from "pino";
import { capacityShortfall, neverFits, place, type PlacementCandidate } from "./placement.js";
import { Scheduler, type ConnectedWorker } from "./scheduler.js";

const schedulers: Scheduler[] = [];
after(() => schedulers.forEach((s) => s.close()));

function makeScheduler(options: ConstructorParameters<typeof Scheduler>[1] = {}) {
  const s = new Scheduler(new ContainerRegistry(), { backlogRetryMs: 10, ...options });
  schedulers.push(s);
  return s;
}

function fakeWorker(id: string, capacity: Partial<WorkerCapacity>, extra: Partial<ConnectedWorker> = {}) {
  const sent: GatewayMessage[] = [];
  const worker: ConnectedWorker = {
    id, hostname: id, pool: "default", runtime: "process", isolates: false, allowUnisolated: true,
    capacity: { cpuMillicores: 4000, memoryMiB: 8192, gpus: [], ...capacity },
    connected: true, cordoned: false, lastSeenAt: Date.now(), send: (m) => sent.push(m), close: () => undefined, ...extra,
  };
  return { worker, sent, runs: () => sent.filter((m) => m.type === "container.run") };
}

function request(over: Partial<ContainerRequest> = {}): ContainerRequest {
  return {
    containerId: randomUUID(), workspaceId: "ws", stubId: null, imageId: null, command: ["true"], env: {},
    cpuMillicores: 1000, memoryMiB: 1024, gpu: [], gpuCount: 0, ports: [], pool: null, ...over,
  };
}

const until = async (check: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("container log history", () => {
  test("is bounded by characters as well as lines, dropping the oldest", () => {
    const registry = new ContainerRegistry({ maxLogLines: 100, maxLogChars: 1000 });
    const id = registry.create({ containerId: "c1" } as ContainerRequest).id;
    const line = (s: string) => ({ stream: "stdout" as const, line: s, at: 0 });
    registry.appendLogs(id, [line("a".repeat(400)), line("b".repeat(400))]);
    registry.appendLogs(id, [line("c".repeat(400))]);
    assert.deepEqual(registry.logHistory(id).map((l) => l.line[0]), ["b", "c"], "1,200 characters > 1,000: the oldest goes");
    registry.appendLogs(id, Array.from({ length: 150 }, () => line("d")));
    assert.equal(registry.logHistory(id).length, 100);
    registry.appendLogs(id, [line("e".repeat(5000))]);
    assert.deepEqual(registry.logHistory(id).map((l) => l.line[0]), ["e"], "one line over the bound is kept alone");
  });
});

describe("placement", () => {
  const cand = (id: string, cpuUsed: number, gpus: WorkerCapacity["gpus"] = [], pool = "default"): PlacementCandidate => ({
    workerId: id, pool, schedulable: true, capacity: { cpuMillicores: 4000, memoryMiB: 8192, gpus },
    reserved: { cpuMillicores: cpuUsed, memoryMiB: 0, gpus: {} },
  });
  const demand = { cpuMillicores: 1000, memoryMiB: 512, gpu: [] as string[], gpuCount: 0, pool: null as string | null };

  test("best fit: the busiest worker that still fits", () => {
    assert.deepEqual(place([cand("idle", 0), cand("busy", 2500), cand("full", 3500)], demand), { workerId: "busy", gpuType: null });
  });

  test("GPU preference order beats packing; count and type must be free", () => {
    const ws = [cand("t4", 3000, [{ type: "T4", count: 1 }]), cand("a10", 0, [{ type: "A10G", count: 2 }])];
    assert.deepEqual(place(ws, { ...demand, gpu: ["A10G", "T4"], gpuCount: 1 }), { workerId: "a10", gpuType: "A10G" });
    assert.deepEqual(place(ws, { ...demand, gpu: ["T4", "A10G"], gpuCount: 1 }), { workerId: "t4", gpuType: "T4" });
    assert.deepEqual(place(ws, { ...demand, gpu: ["any"], gpuCount: 2 }), { workerId: "a10", gpuType: "A10G" });
    const none = place(ws, { ...demand, gpu: ["H100"], gpuCount: 1 });
    assert.equal(none.workerId, null);
  });

  test("pools and cordons; the reason names what is short, with the figures", () => {
    const ws = [cand("a", 0, [], "gpu"), { ...cand("b", 3500), schedulable: false }];
    assert.equal(place(ws, { ...demand, pool: "gpu" }).workerId, "a");
    const r = place(ws, { ...demand, cpuMillicores: 8000 });
    assert.equal(r.workerId, null);
    assert.equal((r as { reason: string }).reason, "needs 8000m CPU, 4000m free on 1 worker");
    assert.equal((place([], demand) as { reason: string }).reason, "no worker connected");
    assert.match((place(ws, { ...demand, pool: "other" }) as { reason: string }).reason, /^no schedulable worker in pool other \(2 connected/);
  });

  test("capacityShortfall: what no worker has free, how much the best one has, on how many workers", () => {
    const one = capacityShortfall([cand("w", 3750)], demand);
    assert.deepEqual(one, {
      constraints: ["cpu"], workers: 1, reason: "needs 1000m CPU, 250m free on 1 worker",
      needs: { cpuMillicores: 1000, memoryMiB: 512, gpu: [], gpuCount: 0 }, free: { cpuMillicores: 250, memoryMiB: 8192, gpus: 0 },
    });
    assert.equal(capacityShortfall([cand("a", 3750), cand("b", 3900)], demand).reason, "needs 1000m CPU, at most 250m free on any of 2 workers");
    const memory = capacityShortfall([cand("w", 0)], { ...demand, memoryMiB: 16384 });
    assert.deepEqual([memory.constraints, memory.reason], [["memory"], "needs 16384 MiB memory, 8192 MiB free on 1 worker"]);
    const gpu = capacityShortfall([{ ...cand("g", 0, [{ type: "T4", count: 1 }]), reserved: { cpuMillicores: 0, memoryMiB: 0, gpus: { T4: 1 } } }], { ...demand, gpu: ["T4"], gpuCount: 1 });
    assert.deepEqual([gpu.constraints, gpu.reason, gpu.free.gpus], [["gpu"], "needs 1× T4 GPU, 0 free on 1 worker", 0]);
    const both = capacityShortfall([cand("w", 3500)], { ...demand, memoryMiB: 10000, pool: "default" });
    assert.deepEqual(both.constraints, ["cpu", "memory"]);
    assert.equal(both.reason, "needs 1000m CPU, 500m free on 1 worker in pool default; needs 10000 MiB memory, 8192 MiB free on 1 worker in pool default");
    // CPU free on one worker, memory on the other: neither alone is short, together they are.
    const split = [cand("cpu-free", 0), { ...cand("mem-free", 3500), reserved: { cpuMillicores: 3500, memoryMiB: 0, gpus: {} } }];
    split[0]!.reserved.memoryMiB = 8000;
    const apart = capacityShortfall(split, { ...demand, memoryMiB: 1024 });
    assert.equal(apart.reason, "needs 1000m CPU, 1024 MiB memory on one worker; none of 2 workers has all of it free");
    assert.equal(apart.constraints.length, 1);
    assert.deepEqual(capacityShortfall([], demand).constraints, ["no_worker"]);
    assert.deepEqual(capacityShortfall([{ ...cand("bare", 0), mayRunUntrusted: false }], demand).constraints, ["unusable"]);
  });

  test("neverFits names a GPU type no connected worker has, but not a worker that is merely busy", () => {
    const ws = [cand("t4", 3900, [{ type: "T4", count: 1 }]), cand("cpu", 0)];
    assert.match(neverFits(ws, { ...demand, gpu: ["A10G"], gpuCount: 1 }) ?? "", /no connected worker has 1× A10G GPU \(connected workers have 1× T4\)/);
    assert.equal(neverFits(ws, { ...demand, gpu: ["T4"], gpuCount: 1 }), undefined, "busy now, but it fits an empty t4");
    assert.match(neverFits(ws, { ...demand, cpuMillicores: 16000 }) ?? "", /^needs 16000m CPU; the largest connected worker has 4000m; /);
    assert.match(neverFits(ws, { ...demand, memoryMiB: 65536 }) ?? "", /^needs 65536 MiB memory; the largest connected worker has 8192 MiB; /);
    assert.equal(neverFits([], { ...demand, gpu: ["A10G"], gpuCount: 1 }), undefined, "no worker yet: one may be joining");
  });

  test("a worker that isolates nothing takes no containers unless its operator opted in, and the reason says how to fix it", () => {
    const bare = { ...cand("bare", 0), mayRunUntrusted: false };
    const none = place([bare], demand);
    assert.equal(none.workerId, null);
    assert.match((none as { reason: string }).reason, /bare\) runs the process runtime, which isolates nothing.*apt-get install runc.*--allow-unisolated/);
    assert.match(neverFits([bare], demand) ?? "", /--allow-unisolated/, "a call fails fast instead of waiting for capacity that never comes");
    assert.equal(place([bare, cand("runc", 3000)], demand).workerId, "runc", "an isolating worker takes it even when fuller");
    assert.equal(neverFits([bare, cand("runc", 3000)], demand), undefined);
    assert.equal(place([{ ...bare, mayRunUntrusted: true }], demand).workerId, "bare", "opted in");
  });

  test("a container with its own network policy goes only to a worker that enforces it, and says so when none does", () => {
    const old = cand("old", 0);
    const filtering = { ...cand("new", 3000), filtersEgress: true };
    const blocked = { ...demand, egress: { block: true } };
    assert.equal(place([old, filtering], blocked).workerId, "new", "never to a worker that would run it unfiltered");
    const none = place([old], blocked);
    assert.equal(none.workerId, null);
    assert.match((none as { reason: string }).reason, /blockNetwork\/allowList need a worker that enforces them, and old cannot/);
    assert.match(neverFits([old], blocked) ?? "", /upgrade the worker/);
    assert.equal(place([old], demand).workerId, "old", "no policy: any worker");
  });

  test("a machine's worker takes only its own workspace's containers; other workers take any", () => {
    const machine = { ...cand("machine", 0), workspaceId: "ws-a" };
    assert.equal(place([machine], { ...demand, workspaceId: "ws-a" }).workerId, "machine");
    assert.equal(place([machine], { ...demand, workspaceId: "ws-b" }).workerId, null);
    assert.equal(place([machine, cand("shared", 3000)], { ...demand, workspaceId: "ws-b" }).workerId, "shared");
  });
});

describe("scheduler", () => {
  test("requests arriving at once never oversubscribe a worker; the rest wait and are placed as room appears", async () => {
    const s = makeScheduler();
    const a = fakeWorker("a", { cpuMillicores: 4000 });
    s.connect(a.worker, []);
    const records = Array.from({ length: 20 }, () => s.submit(request()));
    assert.equal(a.runs().length, 4);
    assert.equal(records.filter((r) => r.workerId === "a").length, 4);
    const placed = records.filter((r) => r.workerId === "a");
    for (const r of placed) s.report("a", { containerId: r.id, state: "EXITED", exitCode: 0, reason: "exited" });
    await until(() => a.runs().length === 8);
    const live = s.containers.list({ workerId: "a", active: true });
    assert.equal(live.reduce((n, r) => n + r.request.cpuMillicores, 0), 4000);
  });

  test("a request that fits nowhere fails after the bound with the reason", async () => {
    const s = makeScheduler({ backlogTimeoutMs: 100 });
    s.connect(fakeWorker("small", { cpuMillicores: 1000 }).worker, []);
    const r = s.submit(request({ cpuMillicores: 2000 }));
    await until(() => r.state === "EXITED");
    assert.equal(r.reason, "unschedulable");
    assert.match(r.message ?? "", /^not placed within 0 s: needs 2000m CPU, 1000m free on 1 worker$/);
  });

  test("a stub waiting for capacity: the reason is kept for it, logged once however often it is retried, and cleared when placed", () => {
    const lines: { level: number; msg: string }[] = [];
    const sink = new Writable({ write(chunk: Buffer, _e, done) { lines.push(JSON.parse(String(chunk))); done(); } });
    const s = makeScheduler({ backlogRetryMs: 60_000, logger: pino({ level: "info" }, sink) });
    const w = fakeWorker("w", { cpuMillicores: 1500 });
    s.connect(w.worker, []);
    const busy = s.submit(request({ cpuMillicores: 1000 }));
    assert.equal(s.waiting("stub-a"), undefined);
    const a1 = s.submit(request({ stubId: "stub-a" }), "resize");
    s.submit(request({ stubId: "stub-a" }), "resize");
    for (let i = 0; i < 3; i++) s.setCordoned("w", false); // each retries the backlog at once
    const wait = s.waiting("stub-a")!;
    assert.equal(wait.message, "waiting for capacity: needs 1000m CPU, 500m free on 1 worker");
    assert.deepEqual([wait.constraints, wait.free.cpuMillicores, wait.workers], [["cpu"], 500, 1]);
    assert.equal(a1.message, wait.message, "the container says so too");
    const warned = lines.filter((l) => l.level === 40).map((l) => l.msg);
    assert.deepEqual(warned, ["resize: waiting for capacity: needs 1000m CPU, 500m free on 1 worker"]);
    s.report("w", { containerId: busy.id, state: "EXITED", exitCode: 0, reason: "exited" });
    assert.equal(a1.workerId, "w");
    assert.ok(s.waiting("stub-a"), "its second container still waits");
    assert.ok(!lines.some((l) => l.msg.includes("capacity found")));
    s.stop(a1.id);
    s.report("w", { containerId: a1.id, state: "EXITED", exitCode: 0, reason: "stopped" });
    assert.equal(s.waiting("stub-a"), undefined);
    assert.ok(lines.some((l) => l.msg === "resize: capacity found, placed"));
  });

  test("a worker joining drains the backlog at once", async () => {
    const s = makeScheduler({ backlogRetryMs: 60_000 });
    const r = s.submit(request());
    assert.equal(r.workerId, null);
    const w = fakeWorker("late", {});
    s.connect(w.worker, []);
    assert.equal(r.workerId, "late");
    assert.equal(w.runs().length, 1);
  });

  test("cordoned workers get nothing new; stop of a backlogged request ends it", () => {
    const s = makeScheduler();
    const w = fakeWorker("c", {});
    s.connect(w.worker, []);
    s.setCordoned("c", true);
    const r = s.submit(request());
    assert.equal(w.runs().length, 0);
    s.stop(r.id);
    assert.equal(r.state, "EXITED");
    assert.equal(r.reason, "stopped");
  });

  test("a silent worker is dropped after the timeout and its containers are lost", async () => {
    const s = makeScheduler({ workerTimeoutMs: 100 });
    const w = fakeWorker("quiet", {});
    s.connect(w.worker, []);
    const r = s.submit(request());
    s.report("quiet", { containerId: r.id, state: "RUNNING" });
    await until(() => r.state === "EXITED", 3000);
    assert.equal(r.reason, "worker_lost");
    assert.equal(s.listWorkers().length, 0);
  });

  test("a reconnecting worker resyncs: reported containers stay, unsent placements are resent, vanished ones are lost", () => {
    const s = makeScheduler();
    const first = fakeWorker("w", {});
    s.connect(first.worker, []);
    const kept = s.submit(request());
    const started = s.submit(request());
    const unsent = s.submit(request());
    s.report("w", { containerId: kept.id, state: "RUNNING" });
    s.report("w", { containerId: started.id, state: "RUNNING" });
    s.disconnect("w", first.worker);
    const second = fakeWorker("w", {});
    s.connect(second.worker, [{ containerId: kept.id, state: "RUNNING", request: kept.request }]);
    assert.equal(kept.state, "RUNNING");
    assert.equal(started.state, "EXITED");
    assert.equal(started.reason, "worker_lost");
    assert.deepEqual(second.runs().map((m) => m.type === "container.run" && m.request.containerId), [unsent.id]);
  });

  test("a container already given up for lost is stopped when its worker comes back with it", () => {
    const s = makeScheduler();
    const first = fakeWorker("w", {});
    s.connect(first.worker, []);
    const lost = s.submit(request());
    s.report("w", { containerId: lost.id, state: "RUNNING" });
    s.remove("w", "link lost");
    assert.equal(lost.reason, "worker_lost");
    const second = fakeWorker("w", {});
    s.connect(second.worker, [{ containerId: lost.id, state: "RUNNING", request: lost.request }]);
    assert.equal(lost.state, "EXITED", "the record stays exited");
    assert.deepEqual(second.sent.filter((m) => m.type === "container.stop").map((m) => m.type === "container.stop" && m.containerId), [lost.id]);
  });

  test("drain cordons the worker and stops its containers with the grace; remove loses them at once", () => {
    const s = makeScheduler();
    const w = fakeWorker("d", {});
    s.connect(w.worker, []);
    const a = s.submit(request());
    const b = s.submit(request());
    s.report("d", { containerId: a.id, state: "RUNNING" });
    assert.equal(s.drain("d", 1234), 2);
    assert.deepEqual(w.sent.filter((m) => m.type === "container.stop").map((m) => m.type === "container.stop" && m.graceMs), [1234, 1234]);
    assert.equal(s.listWorkers()[0]!.cordoned, true);
    const held = s.submit(request());
    assert.equal(held.workerId, null, "a drained worker gets nothing new");
    assert.equal(s.remove("d", "deleted"), true);
    assert.deepEqual([a.state, a.reason, b.state], ["EXITED", "worker_lost", "EXITED"]);
    assert.equal(s.remove("d", "again"), false);
  });

  test("after a gateway restart, a worker's hello recreates the containers it runs", () => {
    const s = makeScheduler();
    const req = request();
    s.connect(fakeWorker("w", {}).worker, [{ containerId: req.containerId, state: "RUNNING", request: req }]);
    const record = s.containers.get(req.containerId)!;
    assert.equal(record.state, "RUNNING");
    assert.equal(record.workerId, "w");
  });
});
