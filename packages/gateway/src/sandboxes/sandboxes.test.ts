/**
 * Sandbox routes and lifetime on a real SQLite store, without a worker (the container stays
 * PENDING): TTL expiry by the reaper, expiry that survives a gateway restart, terminate, TTL
 * updates, exposed-port authorisation. The daemon side runs in the real-runc e2e test.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { SqliteStore } from "../store/sqlite/store.js";
import { SandboxManager } from "./manager.js";
import { until } from "../testing/wait.js";


let gw: TestGateway;
before(async () => {
  gw = await createTestGateway();
});
after(async () => gw.close());

describe("sandbox routes", () => {
  test("create answers PENDING at once with the defaults; the container asks for the sandbox daemon", async () => {
    const res = await gw.request("POST", "/api/v1/sandbox", { body: { env: { A: "1" } } });
    assert.equal(res.statusCode, 201, res.body);
    const sb = res.json();
    assert.deepEqual([sb.state, sb.cpuMillicores, sb.memoryMiB, sb.ttlSeconds, sb.imageId], ["PENDING", 1000, 1024, 600, null]);
    const container = gw.scheduler.containers.get(sb.containerId)!;
    assert.equal(container.request.daemon, "sandbox");
    assert.equal(container.request.env.A, "1");
    assert.equal(container.request.env.BETA9_SANDBOX_ID, sb.id);
    const listed = (await gw.request("GET", "/api/v1/sandbox")).json().items.map((s: { id: string }) => s.id);
    assert.ok(listed.includes(sb.id));
  });

  test("volumes: named, mounted where asked, never over what the sandbox needs", async () => {
    const ok = await gw.request("POST", "/api/v1/sandbox", { body: { volumes: [{ name: "cache", mountPath: "/workspace/cache/" }] } });
    assert.equal(ok.statusCode, 201, ok.body);
    assert.deepEqual(ok.json().volumes, [{ name: "cache", mountPath: "/workspace/cache" }]);
    assert.deepEqual(gw.scheduler.containers.get(ok.json().containerId)!.request.volumes, [{ name: "cache", mountPath: "/workspace/cache" }]);
    for (const mountPath of ["/", "/beta9", "/proc/x", "/etc", "/usr/lib/../../beta9"]) {
      const before = gw.store.dumpForTests();
      const res = await gw.request("POST", "/api/v1/sandbox", { body: { volumes: [{ name: "v", mountPath }] } });
      assert.equal(res.statusCode, 422, `${mountPath}: ${res.body}`);
      assert.equal(res.json().error.code, "INVALID_CONFIG");
      assert.equal(gw.store.dumpForTests(), before);
    }
    for (const volume of [{ name: "../x", mountPath: "/data" }, { name: "v", mountPath: "data" }, { name: "v", mountPath: "/d", extra: 1 }]) {
      assert.equal((await gw.request("POST", "/api/v1/sandbox", { body: { volumes: [volume] } })).statusCode, 422, JSON.stringify(volume));
    }
  });

  test("a sandbox ends at its TTL: the row says expired and its container is stopped", async () => {
    const sb = (await gw.request("POST", "/api/v1/sandbox", { body: { keepWarmSeconds: 1 } })).json();
    const ended = await until("expiry", async () => {
      const s = (await gw.request("GET", `/api/v1/sandbox/${sb.id}`)).json();
      return s.state === "TERMINATED" ? s : undefined;
    });
    assert.equal(ended.reason, "expired");
    assert.equal(gw.scheduler.containers.get(sb.containerId)?.state, "EXITED");
    const active = (await gw.request("GET", "/api/v1/sandbox?active=true")).json().items.map((s: { id: string }) => s.id);
    assert.ok(!active.includes(sb.id));
  });

  test("updateTtl(-1) keeps it until terminated; terminate ends it; an ended sandbox refuses work with 409", async () => {
    const sb = (await gw.request("POST", "/api/v1/sandbox", { body: { keepWarmSeconds: 1 } })).json();
    const forever = await gw.request("POST", `/api/v1/sandbox/${sb.id}/ttl`, { body: { ttlSeconds: -1 } });
    assert.equal(forever.statusCode, 200, forever.body);
    assert.deepEqual([forever.json().expiresAt, forever.json().ttlSeconds], [null, -1]);
    const done = await gw.request("POST", `/api/v1/sandbox/${sb.id}/terminate`);
    assert.deepEqual([done.json().state, done.json().reason], ["TERMINATED", "terminated"]);
    for (const [method, url, body] of [
      ["POST", `/api/v1/sandbox/${sb.id}/exec`, { cmd: "true" }], ["POST", `/api/v1/sandbox/${sb.id}/run-code`, { code: "1" }],
      ["GET", `/api/v1/sandbox/${sb.id}/fs/list?path=.`, undefined], ["POST", `/api/v1/sandbox/${sb.id}/ttl`, { ttlSeconds: 5 }],
      ["POST", `/api/v1/sandbox/${sb.id}/port`, { port: 80 }], ["GET", `/api/v1/sandbox/${sb.id}?wait=ready`, undefined],
    ] as const) {
      const res = await gw.request(method, url, { ...(body && { body }) });
      assert.equal(res.statusCode, 409, `${method} ${url}: ${res.body}`);
      assert.equal(res.json().error.code, "SANDBOX_NOT_RUNNING");
    }
    // Terminating again is harmless and keeps the first reason.
    assert.equal((await gw.request("POST", `/api/v1/sandbox/${sb.id}/terminate`)).json().reason, "terminated");
  });

  test("routes with a body: unknown ids and other workspaces are 404", async () => {
    const sb = (await gw.request("POST", "/api/v1/sandbox", { body: {} })).json();
    const other = (await gw.store.workspaces.create("sandbox-other", "workspace")).token.key;
    for (const id of [sb.id, "00000000-0000-4000-8000-000000000000"]) {
      for (const [path, body] of [["ttl", { ttlSeconds: 5 }], ["port", { port: 80 }], ["exec", { cmd: "true" }], ["run-code", { code: "1" }], ["process/5/kill", {}]] as const) {
        const key = id === sb.id ? other : gw.adminKey;
        const res = await gw.request("POST", `/api/v1/sandbox/${id}/${path}`, { key, body });
        assert.equal(res.statusCode, 404, `${path}: ${res.body}`);
        assert.equal(res.json().error.code, "RESOURCE_NOT_FOUND");
      }
    }
  });

  test("an exposed port needs a read token of the sandbox's workspace unless it is public", async () => {
    const sb = (await gw.request("POST", "/api/v1/sandbox", { body: {} })).json();
    const exposed = await gw.request("POST", `/api/v1/sandbox/${sb.id}/port`, { body: { port: 3000 } });
    assert.equal(exposed.statusCode, 200, exposed.body);
    assert.match(exposed.json().url, new RegExp(`/sandbox/${sb.id}/port/3000/$`));
    const url = `/sandbox/${sb.id}/port/3000/some/path?q=1`;
    const other = (await gw.store.workspaces.create("port-other", "workspace")).token.key;
    const worker = (await gw.store.tokens.create(gw.workspaceId, "worker")).key;
    assert.equal((await gw.request("GET", url, { key: null })).json().error.code, "AUTH_TOKEN_MISSING");
    assert.equal((await gw.request("GET", url, { key: "b9_nope" })).json().error.code, "AUTH_TOKEN_INVALID");
    assert.equal((await gw.request("GET", url, { key: worker })).json().error.code, "AUTH_FORBIDDEN");
    assert.equal((await gw.request("GET", url, { key: other })).statusCode, 404);
    assert.equal((await gw.request("GET", `/sandbox/${sb.id}/port/3001/`, { key: gw.adminKey })).statusCode, 404, "not exposed");
    const listed = (await gw.request("GET", `/api/v1/sandbox/${sb.id}`)).json();
    assert.deepEqual(listed.exposed.map((e: { port: number; public: boolean }) => [e.port, e.public]), [[3000, false]]);
  });
});

describe("sandbox lifetime across a gateway restart", () => {
  test("a sandbox that expired while the gateway was down is ended by the next gateway's reaper", async () => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-sandbox-restart-"));
    try {
      const path = join(dir, "gateway.db");
      let store = new SqliteStore(path);
      const ws = (await store.workspaces.bootstrap("default"))!.workspace;
      const first = new SandboxManager({ store, scheduler: new Scheduler(new ContainerRegistry()), reapIntervalMs: 60_000 });
      const record = await first.create(ws.id, { imageId: null, cpuMillicores: 100, memoryMiB: 64, env: {}, ttlSeconds: 1, pool: null, exposed: [] });
      first.close();
      await store.close(); // the gateway and its timers are gone

      store = new SqliteStore(path);
      const scheduler = new Scheduler(new ContainerRegistry());
      const second = new SandboxManager({ store, scheduler, reapIntervalMs: 20 });
      const ended = await until("the reaper", async () => {
        const r = await store.sandboxes.get(ws.id, record.id);
        return r?.state === "TERMINATED" ? r : undefined;
      });
      assert.equal(ended.reason, "expired");
      second.close();
      scheduler.close();
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
