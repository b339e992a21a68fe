/** `GET /api/v1/task` filters over HTTP: status (one or several), stub, deployment; bad filters are 400s; workspace-scoped. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

let gw: TestGateway;
let stubId: string;
const put: string[] = [];
before(async () => {
  gw = await createTestGateway();
  const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "filter-q", type: "taskqueue/deployment" } })).json().stub;
  stubId = stub.id;
  assert.equal((await gw.request("POST", "/api/v1/deployment", { body: { stubId } })).statusCode, 201);
  const other = (await gw.request("POST", "/api/v1/stub", { body: { name: "filter-other", type: "taskqueue/deployment" } })).json().stub;
  for (const id of [stubId, stubId, other.id]) put.push((await gw.request("POST", `/taskqueue/id/${id}`, { body: {} })).json().task_id);
  assert.equal((await gw.request("POST", `/api/v1/task/${put[1]}/cancel`)).statusCode, 200);
});
after(async () => gw.close());

const list = async (query: string, key?: string) => {
  const res = await gw.request("GET", `/api/v1/task${query}`, key === undefined ? {} : { key });
  assert.equal(res.statusCode, 200, res.body);
  return new Set((res.json().items as { id: string }[]).map((t) => t.id));
};

test("filters by status, stub and deployment name, alone and together", async () => {
  assert.deepEqual(await list(""), new Set(put));
  assert.deepEqual(await list("?status=CANCELLED"), new Set([put[1]]));
  assert.deepEqual(await list("?status=PENDING,CANCELLED"), new Set(put));
  assert.deepEqual(await list(`?stub=${stubId}`), new Set([put[0], put[1]]));
  assert.deepEqual(await list("?deployment=filter-q"), new Set([put[0], put[1]]));
  assert.deepEqual(await list("?deployment=filter-q&status=PENDING"), new Set([put[0]]));
  assert.deepEqual(await list("?deployment=filter-q&status=PENDING&limit=1"), new Set([put[0]]));
  assert.deepEqual(await list("?deployment=no-such-name"), new Set());
});

test("a bad filter is a 4xx that says what is wrong (422 for a malformed one, 400 for stub and deployment together), and lists nothing", async () => {
  for (const query of ["?status=DONE", "?status=pending", "?status=PENDING,", "?deployment=Not_A_Name!", `?stub=${stubId}&deployment=filter-q`, "?stub=", "?workload=x"]) {
    const res = await gw.request("GET", `/api/v1/task${query}`);
    const body = res.json();
    assert.deepEqual([res.statusCode, body.error.code], body.error.code === "BAD_REQUEST" ? [400, "BAD_REQUEST"] : [422, "VALIDATION_FAILED"], `${query}: ${res.body}`);
    assert.ok(body.error.message.length > 0);
    assert.equal(body.items, undefined);
  }
  const both = (await gw.request("GET", `/api/v1/task?stub=${stubId}&deployment=filter-q`)).json().error;
  assert.deepEqual([both.code, both.message], ["BAD_REQUEST", "filter by stub or by deployment, not both"]);
});

test("another workspace sees none of these tasks, whatever it filters by", async () => {
  const other = (await gw.store.workspaces.create("filter-other-ws", "workspace")).token.key;
  for (const query of ["", "?status=PENDING", `?stub=${stubId}`, "?deployment=filter-q"]) assert.deepEqual(await list(query, other), new Set(), query);
});
