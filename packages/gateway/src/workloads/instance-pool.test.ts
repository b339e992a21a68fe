/**
 * One stub's instance pool on its own: the real scheduler and container registry, a runner's
 * /health played by an HTTP server on loopback, and containers reported RUNNING by hand.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test, type TestContext } from "node:test";
import { hashStubConfig, normalizeStubConfig, type Stub } from "@beta9/protocol";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { containerRequest } from "./container-spec.js";
import { InstancePool } from "./instance-pool.js";
import { concurrency } from "./scaling/concurrency.js";

let server: Server;
let port = 0;
before(async () => {
  server = createServer((_req, res) => res.writeHead(200).end('{"status":"ok"}'));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

function stub(config: { concurrentRequests?: number; keepWarmSeconds?: number; autoscaler?: { maxContainers?: number; minContainers?: number; tasksPerContainer?: number } }): Stub {
  const input = config.autoscaler ? { ...config, autoscaler: { type: "queue_depth" as const, ...config.autoscaler } } : { ...config, autoscaler: undefined };
  const normalized = { ...normalizeStubConfig("endpoint", input), handler: "app.js:x" };
  return {
    id: `stub-${Math.random()}`, workspaceId: "ws", appId: "app", name: "pooled", type: "endpoint/deployment", objectId: "0".repeat(64),
    config: normalized, configHash: hashStubConfig(normalized), createdAt: new Date().toISOString(),
  } as Stub;
}

/** A pool whose scaling loop is the concurrency policy, and its containers' news from the registry. */
function setup(t: TestContext, s: Stub) {
  const scheduler = new Scheduler(new ContainerRegistry(), { backlogTimeoutMs: 60_000 });
  const ready: string[] = [];
  const pool: InstancePool = new InstancePool(s, {
    scheduler, acquireTimeoutMs: 60_000, capacityGraceMs: 60_000,
    reconcile: (p) => p.startUpTo(concurrency(p.sample())),
    containerExited: () => undefined,
    containerReady: (_stub, id) => ready.push(id),
  });
  const stop = scheduler.containers.subscribe("*", (e) => e.kind === "state" && pool.onContainerState(e.container));
  t.after(() => {
    stop();
    pool.close();
    scheduler.close();
  });
  const live = () => scheduler.containers.list().filter((c) => c.stubId === s.id && c.state !== "EXITED");
  /** Reports the pool's PENDING containers RUNNING on the fake runner. */
  const run = () => {
    for (const c of live()) if (c.state === "PENDING") scheduler.containers.apply({ containerId: c.id, state: "RUNNING", ports: { "8000": { host: "127.0.0.1", port } } });
  };
  return { scheduler, pool, live, run, ready };
}

test("waiters start containers as the policy asks; slots go to the least loaded one; a release serves the next waiter", async (t) => {
  const s = stub({ concurrentRequests: 2, autoscaler: { maxContainers: 2, tasksPerContainer: 2 } });
  const { pool, live, run } = setup(t, s);
  const first = [pool.acquire(s), pool.acquire(s), pool.acquire(s)];
  assert.equal(live().length, 2, "three waiting at two per container: two containers");
  run();
  const slots = await Promise.all(first);
  const perContainer = new Map<string, number>();
  for (const slot of slots) perContainer.set(slot.containerId, (perContainer.get(slot.containerId) ?? 0) + 1);
  assert.deepEqual([...perContainer.values()].sort(), [1, 2], "spread over both, least loaded first");
  assert.equal(slots[0]!.authorization.startsWith("Bearer "), true, "each slot carries its container's runner secret");
  // Both containers full (4 slots, 3 held + 1): the fifth waits until a release.
  const fourth = await pool.acquire(s);
  let fifthSlot: string | undefined;
  const fifth = pool.acquire(s).then((slot) => (fifthSlot = slot.containerId));
  assert.equal(pool.waiting, 1);
  slots[0]!.release();
  await fifth;
  assert.equal(fifthSlot, slots[0]!.containerId);
  assert.equal(pool.waiting, 0);
  for (const slot of [...slots.slice(1), fourth]) slot.release();
});

test("keep-warm: idle containers past it stop down to minContainers, never one with an invocation in flight", async (t) => {
  const s = stub({ keepWarmSeconds: 5, autoscaler: { maxContainers: 3, minContainers: 1 } });
  const { pool, live, run } = setup(t, s);
  const waiting = [pool.acquire(s), pool.acquire(s), pool.acquire(s)];
  run();
  const slots = await Promise.all(waiting);
  slots[0]!.release();
  slots[1]!.release();
  pool.stopIdle(Date.now() + 1000);
  assert.equal(live().length, 3, "within keep-warm: nothing stops");
  pool.stopIdle(Date.now() + 10_000);
  // Three containers, minContainers 1: both idle ones stop; the busy one stays (and is the minimum).
  assert.deepEqual(live().map((c) => c.id), [slots[2]!.containerId]);
  slots[2]!.release();
});

test("drainAll: idle containers stop now, a busy one when its invocation ends; none takes new work", async (t) => {
  const s = stub({ autoscaler: { maxContainers: 2 } });
  const { pool, live, run } = setup(t, s);
  const waiting = [pool.acquire(s), pool.acquire(s)];
  run();
  const [busy, idle] = await Promise.all(waiting);
  idle!.release();
  assert.equal(pool.drainAll(), 2);
  assert.deepEqual(live().map((c) => c.id), [busy!.containerId], "the idle one stopped at once");
  assert.equal(pool.tryAcquire(), undefined, "a draining container takes no new work");
  busy!.release();
  assert.equal(live().length, 0);
});

test("adopts a running container a worker's hello lists only when it is exactly what the stub would start, on a worker placement could choose", async (t) => {
  const s = { ...stub({ concurrentRequests: 1 }), config: { ...stub({}).config, handler: "app.js:x", pool: "trusted" } } as Stub;
  const { scheduler, pool, ready } = setup(t, s);
  const worker = (id: string, workerPool: string, workspaceId?: string) => ({
    id, hostname: id, pool: workerPool, runtime: "runc" as const, isolates: true, capacity: { cpuMillicores: 4000, memoryMiB: 8192, gpus: [] },
    connected: true, cordoned: false, lastSeenAt: Date.now(), send: () => undefined, close: () => undefined, ...(workspaceId && { workspaceId }),
  });
  const ports = { "8000": { host: "127.0.0.1", port } };
  const reported = (id: string, request: ReturnType<typeof containerRequest>) => ({ containerId: id, state: "RUNNING" as const, ports, request: { ...request, containerId: id } });
  const exact = containerRequest(s, "secret-a", pool.perContainer);
  const changed = { ...containerRequest(s, "secret-b", pool.perContainer), env: { ...exact.env, BETA9_RUNNER_SECRET: "secret-b", EXTRA: "1" } };
  scheduler.connect(worker("trusted-1", "trusted"), [reported("c-exact", exact), reported("c-changed", changed)]);
  scheduler.connect(worker("machine-1", "edge", "ws"), [reported("c-elsewhere", exact)]);
  const record = (id: string) => scheduler.containers.get(id)!;
  assert.equal(pool.adopt(record("c-changed")), false, "not what the stub starts now (env differs): not adopted");
  assert.equal(pool.adopt(record("c-elsewhere")), false, "on a machine of another pool than the stub's: not adopted");
  assert.equal(pool.adopt(record("c-exact")), true);
  assert.equal(pool.adopt(record("c-exact")), false, "once");
  for (let i = 0; i < 200 && !ready.includes("c-exact"); i++) await new Promise((r) => setTimeout(r, 10));
  const slot = await pool.acquire(s);
  assert.deepEqual([slot.containerId, slot.authorization], ["c-exact", "Bearer secret-a"], "called with the secret it was started with");
  slot.release();
});
