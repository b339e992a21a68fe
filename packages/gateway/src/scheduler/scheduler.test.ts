/** Scheduler and placement behaviour, driven through in-memory workers (the socket is tested elsewhere). */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";
import type { ContainerRequest, GatewayMessage, WorkerCapacity } from "@beta9/protocol";
import { ContainerRegistry } from "./containers.js";
import { neverFits, place, type PlacementCandidate } from "./placement.js";
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

  test("pools and cordons; the reason names the largest free slot", () => {
    const ws = [cand("a", 0, [], "gpu"), { ...cand("b", 3500), schedulable: false }];
    assert.equal(place(ws, { ...demand, pool: "gpu" }).workerId, "a");
    const r = place(ws, { ...demand, cpuMillicores: 8000 });
    assert.equal(r.workerId, null);
    assert.match((r as { reason: string }).reason, /largest free slot is 4000m CPU, 8192 MiB/);
    assert.match((place([], demand) as { reason: string }).reason, /no worker is connected/);
  });

  test("neverFits names a GPU type no connected worker has, but not a worker that is merely busy", () => {
    const ws = [cand("t4", 3900, [{ type: "T4", count: 1 }]), cand("cpu", 0)];
    assert.match(neverFits(ws, { ...demand, gpu: ["A10G"], gpuCount: 1 }) ?? "", /no connected worker has 1× A10G GPU \(connected workers have 1× T4\)/);
    assert.equal(neverFits(ws, { ...demand, gpu: ["T4"], gpuCount: 1 }), undefined, "busy now, but it fits an empty t4");
    assert.match(neverFits(ws, { ...demand, cpuMillicores: 16000 }) ?? "", /large enough for 16000m CPU.*largest has 4000m CPU/);
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
    assert.match(r.message ?? "", /largest free slot is 1000m CPU/);
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
