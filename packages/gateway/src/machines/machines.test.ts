/** The machine registry through the HTTP API on a real SQLite store: lifecycle, flags, tokens, expiry. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { MachineMetrics } from "@beta9/protocol";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { SqliteStore } from "../store/sqlite/store.js";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { MachineRegistry } from "./registry.js";

const REGISTER = { hostname: "gpu-box", os: "linux", arch: "x64", agentVersion: "0.1.0", cpuMillicores: 8000, memoryMiB: 32_768, gpus: [{ type: "A10G", count: 1 }] };
const METRICS: MachineMetrics = { cpuPercent: 12.5, memoryPercent: 40, diskPercent: 70, gpus: { total: 1, free: 1 }, containers: 0 };

let gw: TestGateway;
before(async () => {
  gw = await createTestGateway();
});
after(async () => gw.close());

async function createMachine(pool = "default"): Promise<{ id: string; token: string }> {
  const res = await gw.request("POST", "/api/v1/machine", { body: { pool } });
  assert.equal(res.statusCode, 201, res.body);
  const body = res.json();
  return { id: body.machine.id, token: body.token };
}

describe("machine lifecycle over the API", () => {
  test("create → pending with a token shown once; register → registered; keepalive → ready with metrics", async () => {
    const created = await gw.request("POST", "/api/v1/machine", { body: { pool: "default" } });
    assert.equal(created.statusCode, 201);
    const { machine, token } = created.json();
    assert.equal(machine.state, "pending");
    assert.equal(machine.pool, "default");
    assert.match(token, /^b9_/);
    assert.equal(machine.tokenId, undefined, "the token id is internal");

    const reg = await gw.request("POST", "/api/v1/machine/register", { key: token, body: REGISTER });
    assert.equal(reg.statusCode, 200, reg.body);
    assert.equal(reg.json().machine.state, "registered");
    assert.equal(reg.json().machine.hostname, "gpu-box");
    assert.deepEqual(reg.json().machine.gpus, [{ type: "A10G", count: 1 }]);
    assert.equal(reg.json().expirySeconds, 300);
    assert.equal(reg.json().keepaliveIntervalSeconds, 60);

    const ka = await gw.request("POST", "/api/v1/machine/keepalive", { key: token, body: METRICS });
    assert.equal(ka.statusCode, 200, ka.body);
    assert.equal(ka.json().machine.state, "ready");
    assert.deepEqual(ka.json().machine.metrics, METRICS);

    const listed = (await gw.request("GET", "/api/v1/machine")).json().items.find((m: { id: string }) => m.id === machine.id);
    assert.equal(listed.state, "ready");
    assert.equal(listed.agentVersion, "0.1.0");
    assert.equal(listed.workerConnected, false);
    assert.equal(listed.runningContainers, 0);
    assert.ok(listed.lastKeepaliveAt);
  });

  test("/metrics counts machines by state", async () => {
    const text = (await gw.request("GET", "/metrics")).body;
    const ready = Number(/beta9_gateway_machines\{state="ready"\} (\d+)/.exec(text)?.[1]);
    const listed = (await gw.request("GET", "/api/v1/machine")).json().items.filter((m: { state: string }) => m.state === "ready").length;
    assert.equal(ready, listed);
    assert.match(text, /beta9_gateway_machines\{state="pending"\} \d+/);
    assert.match(text, /beta9_gateway_machines\{state="cordoned"\} \d+/);
  });

  test("a machine in a pool that does not exist is refused; one in a created pool is listed by pool", async () => {
    const missing = await gw.request("POST", "/api/v1/machine", { body: { pool: "nope" } });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, "POOL_NOT_FOUND");
    assert.equal((await gw.request("POST", "/api/v1/pool", { body: { name: "gpu" } })).statusCode, 201);
    const { id } = await createMachine("gpu");
    const inGpu = (await gw.request("GET", "/api/v1/machine?pool=gpu")).json().items;
    assert.deepEqual(inGpu.map((m: { id: string }) => m.id), [id]);
  });

  test("a machine token cannot act as a workspace token, and workspace tokens cannot register", async () => {
    const { token } = await createMachine();
    for (const [method, url] of [["GET", "/api/v1/machine"], ["GET", "/api/v1/deployment"], ["POST", "/api/v1/token"], ["GET", "/api/v1/worker"]] as const) {
      const res = await gw.request(method, url, { key: token, ...(method === "POST" && { body: { type: "admin" } }) });
      assert.equal(res.statusCode, 403, `${method} ${url}`);
      assert.equal(res.json().error.code, "AUTH_FORBIDDEN");
    }
    const ws = (await gw.request("POST", "/api/v1/token", { body: { type: "workspace" } })).json().key as string;
    assert.equal((await gw.request("POST", "/api/v1/machine/register", { key: ws, body: REGISTER })).statusCode, 403);
    // A machine token minted by hand belongs to no machine.
    const loose = (await gw.request("POST", "/api/v1/token", { body: { type: "machine" } })).json().key as string;
    assert.equal((await gw.request("POST", "/api/v1/machine/register", { key: loose, body: REGISTER })).statusCode, 403);
  });

  test("keepalive before register is a 409 that says to register", async () => {
    const { token } = await createMachine();
    const res = await gw.request("POST", "/api/v1/machine/keepalive", { key: token, body: METRICS });
    assert.equal(res.statusCode, 409);
    assert.equal(res.json().error.code, "MACHINE_NOT_REGISTERED");
    assert.match(res.json().error.message, /register/);
  });

  test("cordon, uncordon, drain set the flags; delete revokes the token", async () => {
    const { id, token } = await createMachine();
    let m = (await gw.request("POST", `/api/v1/machine/${id}/cordon`)).json();
    assert.equal(m.cordoned, true);
    m = (await gw.request("POST", `/api/v1/machine/${id}/uncordon`)).json();
    assert.equal(m.cordoned, false);
    const drained = (await gw.request("POST", `/api/v1/machine/${id}/drain`)).json();
    assert.deepEqual([drained.machine.cordoned, drained.machine.draining, drained.stopped], [true, true, 0]);
    m = (await gw.request("POST", `/api/v1/machine/${id}/uncordon`)).json();
    assert.deepEqual([m.cordoned, m.draining], [false, false]);

    assert.equal((await gw.request("DELETE", `/api/v1/machine/${id}`)).statusCode, 200);
    assert.equal((await gw.request("GET", `/api/v1/machine/${id}`)).statusCode, 404);
    assert.equal((await gw.request("DELETE", `/api/v1/machine/${id}`)).statusCode, 404);
    const reg = await gw.request("POST", "/api/v1/machine/register", { key: token, body: REGISTER });
    assert.equal(reg.statusCode, 401, "the deleted machine's token is revoked");
  });

  test("another workspace cannot see or change the machine", async () => {
    const { id } = await createMachine();
    const other = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other-ws" } })).json();
    const key = other.token.key as string;
    assert.equal((await gw.request("GET", `/api/v1/machine/${id}`, { key })).statusCode, 404);
    assert.equal((await gw.request("POST", `/api/v1/machine/${id}/cordon`, { key })).statusCode, 404);
    assert.equal((await gw.request("DELETE", `/api/v1/machine/${id}`, { key })).statusCode, 404);
    assert.deepEqual((await gw.request("GET", "/api/v1/machine", { key })).json().items, []);
  });
});

describe("expiry", () => {
  test("a machine silent past the expiry is expired, also by a registry started after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-machines-"));
    const path = join(dir, "gateway.db");
    try {
      let store = new SqliteStore(path);
      const boot = (await store.workspaces.bootstrap("default"))!;
      const { machine } = await store.machines.create(boot.workspace.id, "default");
      await store.machines.register(machine.id, REGISTER);
      await store.machines.keepalive(machine.id, METRICS);
      await store.close();

      await sleep(1100); // the gateway is "down" longer than the expiry below
      store = new SqliteStore(path);
      const scheduler = new Scheduler(new ContainerRegistry());
      const registry = new MachineRegistry({ store, scheduler, expirySeconds: 1 });
      try {
        assert.equal(registry.keepaliveIntervalSeconds, 1, "the interval is capped below the expiry");
        const expired = await registry.expireNow();
        assert.deepEqual(expired.map((m) => m.id), [machine.id]);
        assert.equal((await store.machines.get(boot.workspace.id, machine.id))!.state, "expired");
        // A keepalive does not revive it; registering again does.
        assert.equal(await store.machines.keepalive(machine.id, METRICS), undefined);
        const identity = await registry.workerIdentity(machine.tokenId!);
        assert.ok(identity instanceof Error, "an expired machine's worker is refused");
        assert.equal((await store.machines.register(machine.id, REGISTER))!.state, "registered");
        assert.deepEqual(await registry.workerIdentity(machine.tokenId!), { workerId: machine.id, pool: "default", workspaceId: boot.workspace.id, cordoned: false, draining: false });
      } finally {
        registry.close();
        scheduler.close();
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the timer expires machines by itself", async () => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-machines-"));
    const store = new SqliteStore(join(dir, "gateway.db"));
    const scheduler = new Scheduler(new ContainerRegistry());
    const registry = new MachineRegistry({ store, scheduler, expirySeconds: 1 }).start();
    try {
      const boot = (await store.workspaces.bootstrap("default"))!;
      const { machine } = await store.machines.create(boot.workspace.id, "default");
      await store.machines.register(machine.id, REGISTER);
      let state = "";
      for (let i = 0; i < 100 && state !== "expired"; i++) {
        await sleep(100);
        state = (await store.machines.get(boot.workspace.id, machine.id))!.state;
      }
      assert.equal(state, "expired");
    } finally {
      registry.close();
      scheduler.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
