/** The autoscaler against the real scheduler and container registry, with container exits reported by hand. */
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { hashStubConfig, normalizeStubConfig, type Stub } from "@beta9/protocol";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { Autoscaler } from "./autoscaler.js";

function stub(): Stub {
  const config = { ...normalizeStubConfig("endpoint", {}), handler: "main.js:x" };
  return {
    id: "stub-1", workspaceId: "ws", appId: "app", name: "crashy", type: "endpoint/deployment", objectId: "0".repeat(64),
    config, configHash: hashStubConfig(config), createdAt: new Date().toISOString(),
  } as Stub;
}

/** A real scheduler and autoscaler, closed when the test ends. */
function setup(t: TestContext, options: { capacityGraceMs?: number; acquireTimeoutMs?: number } = {}) {
  const scheduler = new Scheduler(new ContainerRegistry(), { backlogTimeoutMs: 60_000 });
  const autoscaler = new Autoscaler({ scheduler, acquireTimeoutMs: 60_000, ...options });
  t.after(() => {
    autoscaler.close();
    scheduler.close();
  });
  return { scheduler, autoscaler };
}

test("containers that die before they answer: after three in a row the waiting request fails naming the last exit, instead of a restart loop", async (t) => {
  const { scheduler, autoscaler } = setup(t);
  const s = stub();
  const waiting = autoscaler.acquire(s);
  const started: string[] = [];
  for (let i = 0; i < 3; i++) {
    const live = scheduler.containers.list().filter((c) => c.stubId === s.id && c.state !== "EXITED");
    assert.equal(live.length, 1, "one replacement at a time");
    started.push(live[0]!.id);
    scheduler.containers.apply({ containerId: live[0]!.id, state: "EXITED", reason: "exited", exitCode: 1, message: "SyntaxError in main.js" });
  }
  await assert.rejects(waiting, (err: Error & { code?: string }) => {
    assert.equal(err.code, "UNAVAILABLE");
    assert.match(err.message, new RegExp(`3 containers of crashy in a row exited before they answered; the last: container ${started[2]} exited with code 1: SyntaxError in main.js`));
    return true;
  });
  assert.equal(scheduler.containers.list().filter((c) => c.state !== "EXITED").length, 0, "no fourth container");
});

test("a GPU no connected worker has: the waiting request fails with CAPACITY_UNAVAILABLE naming it, instead of a 120 s timeout", async (t) => {
  const { scheduler, autoscaler } = setup(t, { capacityGraceMs: 50 });
  scheduler.connect({
    id: "cpu-only", hostname: "cpu-only", pool: "default", runtime: "runc", isolates: true,
    capacity: { cpuMillicores: 4000, memoryMiB: 8192, gpus: [] },
    connected: true, cordoned: false, lastSeenAt: Date.now(), send: () => undefined, close: () => undefined,
  }, []);
  const s = stub();
  const gpuStub = { ...s, config: { ...s.config, gpu: ["A10G"], gpuCount: 1 } } as Stub;
  await assert.rejects(autoscaler.acquire(gpuStub), (err: Error & { code?: string; statusCode?: number }) => {
    assert.equal(err.code, "CAPACITY_UNAVAILABLE");
    assert.match(err.message, /crashy: no connected worker has 1× A10G GPU \(connected workers have no GPUs\)/);
    return true;
  });
});

test("requests waiting for a container are bounded per stub (maxPendingTasks): one more is 429 QUEUE_FULL, not another held body", async (t) => {
  const { scheduler, autoscaler } = setup(t);
  const s = stub();
  const bounded = { ...s, config: { ...s.config, maxPendingTasks: 2 } } as Stub;
  const waiting = [autoscaler.acquire(bounded), autoscaler.acquire(bounded)];
  for (const w of waiting) w.catch(() => undefined); // they end when the autoscaler closes
  await assert.rejects(autoscaler.acquire(bounded), (err: Error & { code?: string; status?: number; details?: unknown }) => {
    assert.equal(err.code, "QUEUE_FULL");
    assert.equal(err.status, 429);
    assert.deepEqual(err.details, { count: 2, limit: 2 });
    return true;
  });
});

test("a request whose container waits for capacity ends 503 naming what it waits for, with the figures", async (t) => {
  const { scheduler, autoscaler } = setup(t, { acquireTimeoutMs: 100 });
  scheduler.connect({
    id: "busy", hostname: "busy", pool: "default", runtime: "runc", isolates: true,
    capacity: { cpuMillicores: 1500, memoryMiB: 8192, gpus: [] },
    connected: true, cordoned: false, lastSeenAt: Date.now(), send: () => undefined, close: () => undefined,
  }, []);
  // Another workload holds 1000m of the worker's 1500m: the stub's 1000m container cannot be placed yet.
  scheduler.submit({
    containerId: "other", workspaceId: "ws", stubId: null, imageId: null, command: ["sleep", "60"], env: {},
    cpuMillicores: 1000, memoryMiB: 512, gpu: [], gpuCount: 0, ports: [], pool: null,
  });
  await assert.rejects(autoscaler.acquire(stub()), (err: Error & { code?: string; status?: number }) => {
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.status, 503);
    assert.match(err.message, /no container of crashy could start within 0 s: waiting for capacity: needs 1000m CPU, 500m free on 1 worker/);
    return true;
  });
});
