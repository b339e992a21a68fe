/** The dashboard's routes on the gateway: its files and their headers, whoami, a task's input and retry, a deployment's series. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { loadDashboard } from "./dashboard-static.js";

let gw: TestGateway;
let restricted: string;
before(async () => {
  gw = await createTestGateway();
  restricted = (await gw.store.tokens.create(gw.workspaceId, "restricted")).key;
});
after(async () => gw.close());

describe("dashboard files", () => {
  test("/ answers the page (or says how to build it) without a token, under a strict CSP", async () => {
    const res = await gw.request("GET", "/", { key: null });
    if (res.statusCode === 503) {
      assert.match(res.body, /npm run build/);
      return;
    }
    assert.equal(res.statusCode, 200);
    assert.match(res.headers["content-type"] as string, /text\/html/);
    assert.equal(res.headers["cache-control"], "no-cache");
    const csp = res.headers["content-security-policy"] as string;
    for (const part of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(part), csp);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(res.headers["x-content-type-options"], "nosniff");
    const asset = /src="\/dashboard\/([^"]+)"/.exec(res.body)![1]!;
    const js = await gw.request("GET", `/dashboard/${asset}`, { key: null, headers: { "accept-encoding": "gzip" } });
    assert.equal(js.statusCode, 200);
    assert.equal(js.headers["content-encoding"], "gzip");
    assert.match(js.headers["cache-control"] as string, /max-age=31536000, immutable/);
    const again = await gw.request("GET", `/dashboard/${asset}`, { key: null, headers: { "if-none-match": js.headers.etag as string } });
    assert.equal(again.statusCode, 304);
  });

  test("only the built files are served: no path outside, no unknown name", async () => {
    for (const url of ["/dashboard/..%2F..%2Fpackage.json", "/dashboard/nope.js", "/dashboard/index.html"]) {
      assert.equal((await gw.request("GET", url, { key: null })).statusCode, 404, url);
    }
    const dir = mkdtempSync(join(tmpdir(), "beta9-dash-"));
    try {
      writeFileSync(join(dir, "index.html"), "<p>x</p>");
      writeFileSync(join(dir, "app-1.js"), "x".repeat(2000));
      writeFileSync(join(dir, "notes.txt"), "not served");
      const files = loadDashboard(dir);
      assert.deepEqual([...files.keys()].sort(), ["app-1.js", "index.html"]);
      assert.ok(files.get("app-1.js")!.gzip!.length < 100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("dashboard API", () => {
  test("whoami says what the token may do", async () => {
    const admin = (await gw.request("GET", "/api/v1/whoami")).json();
    assert.deepEqual({ type: admin.tokenType, write: admin.canWrite, admin: admin.isAdmin, ws: admin.workspaceName }, { type: "admin", write: true, admin: true, ws: "default" });
    const viewer = (await gw.request("GET", "/api/v1/whoami", { key: restricted })).json();
    assert.deepEqual({ type: viewer.tokenType, write: viewer.canWrite, admin: viewer.isAdmin }, { type: "restricted", write: false, admin: false });
  });

  test("a task's input, and a retry of an ended task puts its input again (restricted tokens may not)", async () => {
    const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "dash-q", type: "taskqueue/deployment" } })).json().stub;
    const put = await gw.request("POST", `/taskqueue/id/${stub.id}`, { body: { n: 7 } });
    assert.equal(put.statusCode, 200, put.body);
    const id = put.json().task_id as string;
    assert.deepEqual((await gw.request("GET", `/api/v1/task/${id}/input`, { key: restricted })).json(), { input: { n: 7 } });
    const early = await gw.request("POST", `/api/v1/task/${id}/retry`);
    assert.equal(early.statusCode, 409, early.body);
    assert.equal((await gw.request("POST", `/api/v1/task/${id}/cancel`)).json().status, "CANCELLED");
    assert.equal((await gw.request("POST", `/api/v1/task/${id}/retry`, { key: restricted })).statusCode, 403);
    const retried = await gw.request("POST", `/api/v1/task/${id}/retry`);
    assert.equal(retried.statusCode, 201, retried.body);
    const again = retried.json().task_id as string;
    assert.notEqual(again, id);
    assert.deepEqual((await gw.request("GET", `/api/v1/task/${again}/input`)).json(), { input: { n: 7 } });
    await gw.request("POST", `/api/v1/task/${again}/cancel`);
  });

  test("a deployment's series: fixed steps over the window, per deployment of this workspace", async () => {
    const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "dash-ep", type: "endpoint/deployment" } })).json().stub;
    const dep = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id } })).json();
    const res = await gw.request("GET", `/api/v1/deployment/${dep.id}/series`, { key: restricted });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.equal(body.stepSeconds, 10);
    assert.equal(body.points.length, 180);
    assert.deepEqual(Object.keys(body.points[0]).sort(), ["calls", "coldStarts", "containers", "errors", "p50", "p99", "t"]);
    const other = (await gw.store.workspaces.create("dash-other", "workspace")).token.key;
    assert.equal((await gw.request("GET", `/api/v1/deployment/${dep.id}/series`, { key: other })).statusCode, 404);
  });
});
