/** What each route does when asked properly: the behaviour users rely on. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { makeTar, sha256 } from "../testing/tar.js";

let gw: TestGateway;
before(async () => { gw = await createTestGateway({ maxObjectBytes: 64 * 1024 }); });
after(async () => gw.close());

const octet = { "content-type": "application/octet-stream" };

describe("system routes", () => {
  test("health needs no token and reports the schema version", async () => {
    const res = await gw.request("GET", "/api/v1/health", { key: null });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().status, "ok");
    assert.equal(res.json().schemaVersion, gw.store.schemaVersion);
  });

  test("the OpenAPI document lists the entity routes and the bearer scheme", async () => {
    const doc = (await gw.request("GET", "/api/v1/openapi.json", { key: null })).json();
    assert.equal(doc.openapi, "3.0.3");
    for (const path of ["/api/v1/deployment", "/api/v1/deployment/{id}", "/api/v1/stub", "/api/v1/object/{hash}", "/api/v1/token/{id}"]) {
      assert.ok(doc.paths[path], `${path} missing from OpenAPI`);
    }
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: "http", scheme: "bearer" });
  });

  test("the OpenAPI document validates against the OpenAPI 3.0 schema (client generators accept it)", async () => {
    const { default: SwaggerParser } = await import("@apidevtools/swagger-parser");
    const doc = (await gw.request("GET", "/api/v1/openapi.json", { key: null })).json();
    const checked = await SwaggerParser.validate(structuredClone(doc));
    assert.ok(Object.keys(checked.paths ?? {}).length > 50);
    // The check can fail: a JSON-Schema-2019 style numeric exclusiveMinimum (what TypeBox emits) is refused.
    const broken = structuredClone(doc);
    broken.components = { ...broken.components, schemas: { Broken: { type: "number", exclusiveMinimum: 0 } } };
    await assert.rejects(SwaggerParser.validate(broken));
  });

  test("/metrics answers Prometheus text to an admin", async () => {
    await gw.request("GET", "/api/v1/deployment");
    const res = await gw.request("GET", "/metrics");
    assert.equal(res.statusCode, 200);
    assert.match(res.headers["content-type"] as string, /text\/plain/);
    assert.match(res.body, /beta9_gateway_http_requests_total\{route="\/api\/v1\/deployment",method="GET",status="200"\} \d+/);
  });
});

describe("workspaces and tokens", () => {
  test("the bootstrap token lists deployments; a second workspace sees none of the first's", async () => {
    assert.deepEqual((await gw.request("GET", "/api/v1/deployment")).json(), { items: [] });
    const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "iso", type: "endpoint/deployment" } })).json().stub;
    const dep = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id } })).json();
    const created = await gw.request("POST", "/api/v1/workspace", { body: { name: "team-b" } });
    assert.equal(created.statusCode, 201);
    const keyB = created.json().token.key as string;
    assert.equal(created.json().token.type, "workspace");
    assert.equal((await gw.request("GET", "/api/v1/deployment", { key: keyB })).json().items.length, 0);
    assert.equal((await gw.request("GET", `/api/v1/deployment/${dep.id}`, { key: keyB })).statusCode, 404);
    assert.equal((await gw.request("POST", `/api/v1/deployment/${dep.id}/stop`, { key: keyB })).statusCode, 404);
    assert.equal((await gw.request("GET", `/api/v1/deployment/${dep.id}`)).json().active, true);
    assert.equal((await gw.request("GET", "/api/v1/workspace/current", { key: keyB })).json().name, "team-b");
    const dup = await gw.request("POST", "/api/v1/workspace", { body: { name: "team-b" } });
    assert.equal(dup.statusCode, 409);
    assert.equal(dup.json().error.code, "NAME_TAKEN");
  });

  test("a stub cannot name an image only another workspace asked for (404, as for containers and sandboxes)", async () => {
    const imageId = "ab".repeat(16);
    const mine = (await gw.request("GET", "/api/v1/workspace/current")).json().id as string;
    await gw.store.images.request(mine, imageId, { base: { kind: "scratch" }, steps: [], env: {} });
    const other = (await gw.request("POST", "/api/v1/workspace", { body: { name: "image-thief" } })).json().token.key as string;
    const stolen = await gw.request("POST", "/api/v1/stub", { key: other, body: { name: "thief", type: "endpoint/deployment", config: { imageId } } });
    assert.equal(stolen.statusCode, 404);
    assert.equal(stolen.json().error.code, "RESOURCE_NOT_FOUND");
    const own = await gw.request("POST", "/api/v1/stub", { body: { name: "owner", type: "endpoint/deployment", config: { imageId } } });
    assert.equal(own.statusCode, 201, own.body);
  });

  test("a restricted token sees a stub's env names, never their values", async () => {
    const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "envy", type: "endpoint/deployment", config: { env: { API_KEY: "sk-123" } } } })).json().stub;
    const restricted = (await gw.request("POST", "/api/v1/token", { body: { type: "restricted" } })).json().key as string;
    const seen = await gw.request("GET", `/api/v1/stub/${stub.id}`, { key: restricted });
    assert.deepEqual(seen.json().config.env, { API_KEY: "(hidden)" });
    assert.ok(!(await gw.request("GET", "/api/v1/stub", { key: restricted })).body.includes("sk-123"));
    assert.deepEqual((await gw.request("GET", `/api/v1/stub/${stub.id}`)).json().config.env, { API_KEY: "sk-123" }, "an admin sees it");
  });

  test("a callbackUrl on loopback, link-local or a private address is refused at deploy time", async () => {
    for (const url of ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://localhost:8080/", "http://10.0.0.5/cb"]) {
      const res = await gw.request("POST", "/api/v1/stub", { body: { name: "cb", type: "taskqueue/deployment", config: { callbackUrl: url } } });
      assert.equal(res.statusCode, 422, url);
      assert.equal(res.json().error.code, "INVALID_CONFIG");
      assert.match(res.json().error.message, /callbackUrl.*public addresses only/);
    }
    const ok = await gw.request("POST", "/api/v1/stub", { body: { name: "cb", type: "taskqueue/deployment", config: { callbackUrl: "https://example.com/cb" } } });
    assert.equal(ok.statusCode, 201, ok.body);
  });

  test("tokens: keys shown once, minting rules, revocation, the last admin", async () => {
    const created = await gw.request("POST", "/api/v1/token", { body: { type: "workspace", name: "ci" } });
    assert.equal(created.statusCode, 201);
    const { key, id } = created.json();
    assert.match(key, /^b9_/);
    const listed = (await gw.request("GET", "/api/v1/token")).json().items as Record<string, unknown>[];
    assert.ok(listed.some((t) => t.id === id && t.name === "ci"));
    assert.ok(listed.every((t) => !("key" in t) && !JSON.stringify(t).includes(key)));
    const forbidden = await gw.request("POST", "/api/v1/token", { key, body: { type: "admin" } });
    assert.equal(forbidden.statusCode, 403);
    const restricted = (await gw.request("POST", "/api/v1/token", { key, body: { type: "restricted" } })).json();
    assert.equal((await gw.request("GET", "/api/v1/deployment", { key: restricted.key })).statusCode, 200);
    assert.equal((await gw.request("POST", "/api/v1/token", { key: restricted.key, body: { type: "restricted" } })).statusCode, 403);
    assert.equal((await gw.request("DELETE", `/api/v1/token/${id}`)).json().active, false);
    assert.equal((await gw.request("DELETE", `/api/v1/token/${id}`)).statusCode, 200, "revoking twice is fine");
    assert.equal((await gw.request("GET", "/api/v1/deployment", { key })).statusCode, 401);
    const adminId = (await gw.request("GET", "/api/v1/token")).json().items.find((t: { type: string }) => t.type === "admin").id;
    const last = await gw.request("DELETE", `/api/v1/token/${adminId}`);
    assert.equal(last.statusCode, 409);
    assert.equal((await gw.request("GET", "/api/v1/deployment")).statusCode, 200, "the admin token still works");
  });
});

describe("stubs and deployments", () => {
  test("an equal config (in other units) reuses the stub; a changed one makes a new stub", async () => {
    const a = await gw.request("POST", "/api/v1/stub", { body: { name: "m", type: "endpoint/deployment", config: { cpu: 2, memory: "1Gi", gpu: "a10g" } } });
    const b = await gw.request("POST", "/api/v1/stub", { body: { name: "m", type: "endpoint/deployment", config: { cpu: "2000m", memory: 1024, gpu: ["A10G"], gpuCount: 1 } } });
    const c = await gw.request("POST", "/api/v1/stub", { body: { name: "m", type: "endpoint/deployment", config: { cpu: 4, memory: "1Gi", gpu: "a10g" } } });
    assert.deepEqual([a.statusCode, b.statusCode, c.statusCode], [201, 200, 201]);
    assert.equal(a.json().stub.id, b.json().stub.id);
    assert.notEqual(a.json().stub.id, c.json().stub.id);
    const config = a.json().stub.config;
    assert.equal(config.cpuMillicores, 2000);
    assert.equal(config.memoryMiB, 1024);
    assert.deepEqual(config.gpu, ["A10G"]);
    assert.equal(config.keepWarmSeconds, 180, "endpoint default keep-warm");
  });

  test("deploy makes v1, v2 …; stop, start and delete; lists filter and order newest first", async () => {
    const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "q", type: "taskqueue/deployment", app: "shop" } })).json().stub;
    const v1 = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id, name: "orders" } })).json();
    const v2 = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id, name: "orders" } })).json();
    assert.deepEqual([v1.version, v2.version], [1, 2]);
    assert.equal((await gw.request("POST", `/api/v1/deployment/${v2.id}/stop`)).json().active, false);
    assert.deepEqual((await gw.request("GET", "/api/v1/deployment?name=orders&active=true")).json().items.map((d: { version: number }) => d.version), [1]);
    assert.equal((await gw.request("POST", `/api/v1/deployment/${v2.id}/start`)).json().active, true);
    assert.deepEqual((await gw.request("GET", "/api/v1/deployment?name=orders")).json().items.map((d: { version: number }) => d.version), [2, 1]);
    assert.equal((await gw.request("DELETE", `/api/v1/deployment/${v2.id}`)).statusCode, 204);
    assert.equal((await gw.request("GET", `/api/v1/deployment/${v2.id}`)).statusCode, 404);
    const v3 = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id, name: "orders" } })).json();
    assert.equal(v3.version, 3, "a deleted version number is never reused");
    assert.equal((await gw.request("GET", "/api/v1/deployment?name=orders&limit=1")).json().items.length, 1);
    const apps = (await gw.request("GET", "/api/v1/app")).json().items.map((a: { name: string }) => a.name);
    assert.ok(apps.includes("shop"));
  });

  test("serve stubs cannot be deployed; names keep their workload type", async () => {
    const serve = (await gw.request("POST", "/api/v1/stub", { body: { name: "dev", type: "endpoint/serve" } })).json().stub;
    const res = await gw.request("POST", "/api/v1/deployment", { body: { stubId: serve.id } });
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().error.code, "STUB_NOT_DEPLOYABLE");
    const ep = (await gw.request("POST", "/api/v1/stub", { body: { name: "ep", type: "endpoint/deployment" } })).json().stub;
    const fn = (await gw.request("POST", "/api/v1/stub", { body: { name: "fn", type: "function/deployment" } })).json().stub;
    assert.equal((await gw.request("POST", "/api/v1/deployment", { body: { stubId: ep.id, name: "shared" } })).statusCode, 201);
    const clash = await gw.request("POST", "/api/v1/deployment", { body: { stubId: fn.id, name: "shared" } });
    assert.equal(clash.statusCode, 409);
  });
});

describe("objects", () => {
  const bundle = makeTar([{ name: "src/app.ts", data: "export const handler = () => 1;\n" }], { gzip: true });
  const hash = sha256(bundle);

  test("HEAD 404 → PUT 201 → HEAD 200 → PUT 200 → GET the same bytes; stubs can reference it", async () => {
    assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`)).statusCode, 404);
    const put = await gw.request("PUT", `/api/v1/object/${hash}`, { body: bundle, headers: octet });
    assert.equal(put.statusCode, 201, put.body);
    assert.equal(put.json().size, bundle.length);
    assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`)).statusCode, 200);
    assert.equal((await gw.request("PUT", `/api/v1/object/${hash}`, { body: bundle, headers: octet })).statusCode, 200);
    const got = await gw.request("GET", `/api/v1/object/${hash}`);
    assert.equal(got.statusCode, 200);
    assert.ok(got.rawPayload.equals(bundle));
    const stub = await gw.request("POST", "/api/v1/stub", { body: { name: "withcode", type: "function/deployment", objectId: hash } });
    assert.equal(stub.json().stub.objectId, hash);
  });

  test("another workspace must upload the bytes itself before it can use them", async () => {
    const other = (await gw.request("POST", "/api/v1/workspace", { body: { name: "objects-b" } })).json().token.key;
    assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`, { key: other })).statusCode, 404);
    assert.equal((await gw.request("GET", `/api/v1/object/${hash}`, { key: other })).statusCode, 404);
    assert.equal((await gw.request("PUT", `/api/v1/object/${hash}`, { key: other, body: bundle, headers: octet })).statusCode, 201);
  });

  test("refused uploads leave no file and no row", async () => {
    const evil = makeTar([{ name: "../../etc/cron.d/x", data: "* * * * * root sh\n" }]);
    const big = makeTar([{ name: "big.bin", data: Buffer.alloc(70 * 1024, 1) }]);
    const cases: [string, Buffer, number, string][] = [
      [sha256(evil), evil, 422, "BUNDLE_INVALID"],
      [sha256(bundle).replace(/^./, (c) => (c === "0" ? "1" : "0")), bundle, 422, "OBJECT_HASH_MISMATCH"],
      [sha256(big), big, 413, "OBJECT_TOO_LARGE"],
      [sha256(Buffer.from("plain text")), Buffer.from("plain text"), 422, "BUNDLE_INVALID"],
    ];
    for (const [h, bytes, status, code] of cases) {
      const dump = gw.store.dumpForTests();
      const res = await gw.request("PUT", `/api/v1/object/${h}`, { body: bytes, headers: octet });
      assert.equal(res.statusCode, status, res.body);
      assert.equal(res.json().error.code, code);
      assert.equal(existsSync(join(gw.dir, "objects", h.slice(0, 2), h)), false);
      assert.equal(gw.store.dumpForTests(), dump);
    }
  });
});

describe("public invocation (access public)", () => {
  test("/public/:stubId takes a task without a token for an authorized: false deployment, and 404s once it is stopped", async () => {
    // No code: the task stays queued (no container starts in this test), which is all this checks.
    const body = (authorized: boolean) => ({ name: "open-q", type: "taskqueue/deployment", config: { authorized } });
    const open = (await gw.request("POST", "/api/v1/stub", { body: body(false) })).json().stub;
    const closed = (await gw.request("POST", "/api/v1/stub", { body: body(true) })).json().stub;
    const dep = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: open.id } })).json();
    await gw.request("POST", "/api/v1/deployment", { body: { stubId: closed.id, name: "closed-q" } });
    const put = await gw.request("POST", `/public/${open.id}`, { key: null, body: { n: 1 } });
    assert.equal(put.statusCode, 200, put.body);
    const task = (await gw.request("GET", `/api/v1/task/${put.json().task_id}`)).json();
    assert.equal(task.stubId, open.id);
    assert.equal((await gw.request("POST", `/public/${closed.id}`, { key: null, body: { n: 1 } })).statusCode, 404, "an authorized stub stays hidden");
    assert.equal((await gw.request("POST", `/public/${closed.id}`, { body: { n: 1 } })).statusCode, 404, "even with a valid token");
    await gw.request("POST", `/api/v1/deployment/${dep.id}/stop`);
    assert.equal((await gw.request("POST", `/public/${open.id}`, { key: null, body: { n: 1 } })).statusCode, 404, "a stopped deployment is not public");
    await gw.request("POST", `/api/v1/task/${task.id}/cancel`);
  });

  test("maxPendingTasks holds for puts that arrive together: each counts before it is written", async () => {
    const q = (await gw.request("POST", "/api/v1/stub", { body: { name: "burst-q", type: "taskqueue/deployment", config: { maxPendingTasks: 2 } } })).json().stub;
    await gw.request("POST", "/api/v1/deployment", { body: { stubId: q.id } });
    // No code: accepted tasks stay queued, holding their places.
    const answers = await Promise.all(Array.from({ length: 5 }, (_, n) => gw.request("POST", "/taskqueue/burst-q", { body: { n } })));
    assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 200, 429, 429, 429], answers.map((a) => a.body).join("\n"));
    for (const a of answers.filter((x) => x.statusCode === 200)) await gw.request("POST", `/api/v1/task/${a.json().task_id}/cancel`);
  });

  test("maxPendingTasks holds for functions too, public ones included: the next call is a 429", async () => {
    const fn = (await gw.request("POST", "/api/v1/stub", { body: { name: "open-fn", type: "function/deployment", config: { authorized: false, maxPendingTasks: 1 } } })).json().stub;
    await gw.request("POST", "/api/v1/deployment", { body: { stubId: fn.id } });
    // No code: the first call's task waits for a container that never comes, holding the one place.
    const first = gw.request("POST", `/public/${fn.id}`, { key: null, body: { n: 1 } });
    let pending: { id: string } | undefined;
    for (let i = 0; !pending; i++) {
      assert.ok(i < 200, "the first call's task never appeared");
      pending = (await gw.request("GET", "/api/v1/task")).json().items.find((t: { stubId: string }) => t.stubId === fn.id);
      if (!pending) await new Promise((r) => setTimeout(r, 10));
    }
    const second = await gw.request("POST", `/public/${fn.id}`, { key: null, body: { n: 2 } });
    assert.equal(second.statusCode, 429, second.body);
    assert.equal(second.json().error.code, "QUEUE_FULL");
    assert.equal(second.headers["retry-after"], "1", "a full queue says when to try again");
    assert.deepEqual(second.json().error.details, { count: 1, limit: 1 }, "and its bound, for clients that adapt to it");
    const viaToken = await gw.request("POST", "/function/open-fn", { body: { n: 3 } });
    assert.equal(viaToken.json().error.code, "QUEUE_FULL");
    await gw.request("POST", `/api/v1/task/${pending.id}/cancel`);
    const ended = await first;
    assert.equal(ended.statusCode, 409, "the first call answers once its task ends (cancelled here)");
    assert.equal(ended.json().error.code, "TASK_CANCELLED");
  });
});
