/** Serve sessions at the gateway: isolation, what can be served, and the end of a session when heartbeats stop. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { makeTar, sha256 } from "../testing/tar.js";
import { Autoscaler } from "./autoscaler.js";
import { ServeSessions } from "./serve-sessions.js";

let gw: TestGateway;
let otherKey: string;
let serveStub: { id: string };
const bundle = makeTar([{ name: "main.js", data: "export const x = 1;\n" }], { gzip: true });

before(async () => {
  gw = await createTestGateway();
  otherKey = (await gw.store.workspaces.create("other", "workspace")).token.key;
  await gw.request("PUT", `/api/v1/object/${sha256(bundle)}`, { body: bundle, headers: { "content-type": "application/octet-stream" } });
  serveStub = (await gw.request("POST", "/api/v1/stub", { body: { name: "dev", type: "endpoint/serve", objectId: sha256(bundle), config: { handler: "main.js:x" } } })).json().stub;
});
after(async () => gw.close());

test("a session starts exactly one container for its serve stub and is invisible to other workspaces", async () => {
  const created = await gw.request("POST", "/api/v1/serve", { body: { stubId: serveStub.id } });
  assert.equal(created.statusCode, 201, created.body);
  const session = created.json();
  assert.equal(session.url, `/serve/${session.id}`);
  const ours = () => gw.scheduler.containers.list().filter((c) => c.stubId === serveStub.id && c.state !== "EXITED");
  assert.equal(ours().length, 1, "one container starts at once, before any call");
  assert.equal((await gw.request("POST", `/api/v1/serve/${session.id}/heartbeat`)).json().containerId, ours()[0]!.id);
  for (const [method, url, body] of [
    ["GET", `/api/v1/serve/${session.id}`], ["POST", `/api/v1/serve/${session.id}/heartbeat`], ["PUT", `/api/v1/serve/${session.id}/stub`, { stubId: serveStub.id }],
    ["DELETE", `/api/v1/serve/${session.id}`], ["POST", `/serve/${session.id}`, {}],
  ] as const) {
    assert.equal((await gw.request(method, url, { key: otherKey, body })).statusCode, 404, `${method} ${url} from another workspace`);
    assert.equal((await gw.request(method, url.replace(session.id, "00000000-0000-4000-8000-000000000000"), { body })).statusCode, 404, `${method} ${url} unknown`);
  }
  assert.equal((await gw.request("GET", "/api/v1/deployment")).json().items.length, 0, "a serve session is no deployment");
  assert.equal((await gw.request("DELETE", `/api/v1/serve/${session.id}`)).statusCode, 204);
  assert.equal((await gw.request("GET", `/api/v1/serve/${session.id}`)).statusCode, 404);
  assert.equal(ours().filter((c) => c.state !== "STOPPING").length, 0, "its container is stopping");
});

test("deployment stubs and stubs without code cannot be served", async () => {
  const deployable = (await gw.request("POST", "/api/v1/stub", { body: { name: "dep", type: "endpoint/deployment", objectId: sha256(bundle), config: { handler: "main.js:x" } } })).json().stub;
  const noCode = (await gw.request("POST", "/api/v1/stub", { body: { name: "nocode", type: "function/serve" } })).json().stub;
  for (const stub of [deployable, noCode]) {
    const res = await gw.request("POST", "/api/v1/serve", { body: { stubId: stub.id } });
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(res.json().error.code, "CONFLICT");
  }
});

test("a session whose heartbeats stop ends, and its container is stopped", async () => {
  const scheduler = new Scheduler(new ContainerRegistry(), { backlogTimeoutMs: 60_000 });
  const autoscaler = new Autoscaler({ scheduler, acquireTimeoutMs: 500 });
  const sessions = new ServeSessions({ autoscaler, heartbeatTimeoutMs: 200 });
  try {
    const stub = (await gw.store.stubs.get(gw.workspaceId, serveStub.id))!;
    const session = sessions.create(stub);
    assert.equal(scheduler.containers.list().length, 1);
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(sessions.heartbeat(gw.workspaceId, session.id), "alive while it heartbeats");
    }
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(sessions.get(gw.workspaceId, session.id), undefined);
    assert.ok(scheduler.containers.list().every((c) => c.state === "STOPPING" || c.state === "EXITED"), JSON.stringify(scheduler.containers.list()));
  } finally {
    sessions.close();
    autoscaler.close();
    scheduler.close();
  }
});
