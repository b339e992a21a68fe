/**
 * A workload that declares its input's schema has bad inputs refused by the gateway: 422
 * INPUT_INVALID naming the field, before a task exists or a container is asked for, on every
 * route (task queue, function, endpoint, public), with the store left exactly as it was.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { makeTar, sha256 } from "../testing/tar.js";

let gw: TestGateway;
const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }], { gzip: true });
const inputs = {
  type: "object",
  properties: { imageUrl: { type: "string" }, sizes: { type: "array", items: { type: "integer" } }, note: { type: "string" } },
  required: ["imageUrl"],
};

async function deploy(kind: string, name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const stub = await gw.request("POST", "/api/v1/stub", {
    body: { name, type: `${kind}/deployment`, objectId: sha256(bundle), config: { handler: "app.js:x", inputs, ...extra } },
  });
  assert.ok(stub.statusCode === 200 || stub.statusCode === 201, stub.body);
  const id = stub.json().stub.id as string;
  const dep = await gw.request("POST", "/api/v1/deployment", { body: { stubId: id } });
  assert.equal(dep.statusCode, 201, dep.body);
  return id;
}

before(async () => {
  gw = await createTestGateway();
  const put = await gw.request("PUT", `/api/v1/object/${sha256(bundle)}`, { body: bundle, headers: { "content-type": "application/octet-stream" } });
  assert.equal(put.statusCode, 201, put.body);
});
after(async () => {
  await gw?.close();
});

async function refused(url: string, body: unknown, message: RegExp, key?: null): Promise<void> {
  const dump = gw.store.dumpForTests();
  const containers = JSON.stringify(gw.scheduler.containers.list());
  const res = await gw.request("POST", url, { body, ...(key === null && { key }) });
  assert.equal(res.statusCode, 422, `${url}: ${res.body}`);
  const error = res.json().error as { code: string; message: string };
  assert.equal(error.code, "INPUT_INVALID");
  assert.match(error.message, message);
  assert.deepEqual(gw.store.dumpForTests(), dump, `${url}: a refused input changes nothing`);
  assert.equal(JSON.stringify(gw.scheduler.containers.list()), containers, `${url}: no container was asked for`);
}

test("a task queue refuses a bad input with 422 before any task exists", async () => {
  await deploy("taskqueue", "images");
  await refused("/taskqueue/images", { sizes: [1] }, /^input\.imageUrl: required \(expected a string\)$/);
  await refused("/taskqueue/images", { imageUrl: "x", sizes: [1, "2"] }, /^input\.sizes\[1\]: expected an integer, got "2"$/);
  await refused("/taskqueue/images", [1], /^input: expected an object, got an array$/);
  const ok = await gw.request("POST", "/taskqueue/images", { body: { imageUrl: "https://example.com/a.jpg", extra: true } });
  assert.equal(ok.statusCode, 200, ok.body);
  const task = await gw.request("GET", `/api/v1/task/${ok.json().task_id}`);
  assert.equal(task.statusCode, 200, task.body);
});

test("functions and endpoints refuse it the same way, and public routes too", async () => {
  await deploy("function", "square");
  await refused("/function/square", { imageUrl: 3 }, /^input\.imageUrl: expected a string, got 3$/);
  const endpoint = await deploy("endpoint", "classify", { authorized: false });
  // No worker is connected: a call that passed the check would wait for a container.
  await refused("/endpoint/classify", { note: "n" }, /^input\.imageUrl: required/);
  await refused(`/public/${endpoint}`, {}, /^input\.imageUrl: required/, null);
});

test("Python's schemas refuse unknown fields; an empty body is an empty object", async () => {
  await deploy("taskqueue", "strict", { inputs: { type: "object", properties: { n: { type: "integer" } }, required: [], additionalProperties: false } });
  await refused("/taskqueue/strict", { n: 1, m: 2 }, /^input\.m: unknown field; expected one of n$/);
  const empty = await gw.request("POST", "/taskqueue/strict", {});
  assert.equal(empty.statusCode, 200, empty.body);
});

test("a schema the gateway cannot check is refused at stub creation, naming the place", async () => {
  const bad = [
    [{ type: "object", properties: { a: { type: "date" } } }, /inputs\.properties\.a\.type/],
    [{ type: "object", required: ["b"], properties: {} }, /"b" is not in properties/],
    [{ type: "object", properties: { a: { pattern: "^(a+)+$" } } }, /unknown keyword "pattern"/],
    [JSON.parse("{" + '"items":{'.repeat(12) + "}".repeat(12) + "}"), /nested deeper than 8 levels/],
  ] as const;
  for (const [schema, message] of bad) {
    const dump = gw.store.dumpForTests();
    const res = await gw.request("POST", "/api/v1/stub", { body: { name: "bad", type: "taskqueue/deployment", objectId: sha256(bundle), config: { inputs: schema } } });
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error.code, "INVALID_CONFIG");
    assert.match(res.json().error.message, message);
    assert.deepEqual(gw.store.dumpForTests(), dump);
  }
  const schedule = await gw.request("POST", "/api/v1/stub", { body: { name: "tick", type: "schedule/deployment", objectId: sha256(bundle), config: { when: "@hourly", inputs } } });
  assert.equal(schedule.statusCode, 422, schedule.body);
  assert.match(schedule.json().error.message, /only endpoints, task queues and functions take an input/);
});

test("a missing field deep in a body is named by its whole path", async () => {
  const res = await gw.request("POST", "/api/v1/stub", { body: { name: "q", type: "taskqueue/deployment", objectId: sha256(bundle), config: { autoscaler: { maxContainers: 2 } } } });
  assert.equal(res.statusCode, 422, res.body);
  assert.match(res.json().error.message, /body\.config\.autoscaler\.type is required/);
});
