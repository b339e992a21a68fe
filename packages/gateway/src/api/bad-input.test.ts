/**
 * Every route against every kind of bad request: no token, a wrong token, a token of a type the
 * route refuses, another workspace's token, unknown ids, malformed JSON, wrong types, unknown
 * fields, oversized bodies, wrong media types. Each must answer its documented 4xx code and leave
 * the store (every column of every row) and the object files exactly as they were.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TokenType } from "@beta9/protocol";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { makeTar, sha256 } from "../testing/tar.js";

interface RouteCase {
  method: string;
  url: string;
  /** The route pattern as registered, to check that the table covers every route. */
  pattern: string;
  /** A valid JSON body, for routes that take one. */
  body?: () => unknown;
  /** Whether the route names a resource by id (another workspace then gets 404). */
  byId?: boolean;
  /** Needs no token (its own tests below check what it refuses). */
  open?: boolean;
  /** The token a valid request uses (default: admin); machine routes take a machine's token. */
  key?: () => string;
}

let gw: TestGateway;
/** A machine and its own token (the `machine` key above belongs to no machine). */
const machine = { id: "", key: "" };
const MACHINE_REGISTER = { hostname: "h", os: "linux", arch: "x64", agentVersion: "1", cpuMillicores: 1000, memoryMiB: 1024, gpus: [] };
const MACHINE_METRICS = { cpuPercent: 1, memoryPercent: 2, diskPercent: 3, gpus: { total: 0, free: 0 }, containers: 0 };
const keys = {} as Record<TokenType | "otherWorkspace", string>;
const ids = { stub: "", deployment: "", object: "", app: "", task: "", token: "", container: "", serveStub: "", serve: "", sandbox: "" };
const bundle = makeTar([{ name: "app.ts", data: "export const x = 1;\n" }], { gzip: true });

function objectFiles(): string[] {
  const root = join(gw.dir, "objects");
  return readdirSync(root, { recursive: true }).map(String).sort();
}

/** Runs the request and asserts status, code, and that nothing changed. */
async function expectRejected(
  c: { method: string; url: string },
  options: Parameters<TestGateway["request"]>[2],
  status: number,
  code: string,
): Promise<void> {
  const dump = gw.store.dumpForTests();
  const files = objectFiles();
  const containers = JSON.stringify(gw.scheduler.containers.list());
  const res = await gw.request(c.method, c.url, options);
  const where = `${c.method} ${c.url} with ${JSON.stringify({ ...options, body: undefined })}`;
  assert.equal(res.statusCode, status, `${where}: status ${res.statusCode}, body ${res.body}`);
  if (c.method !== "HEAD") {
    const body = res.json() as { error?: { code?: string; message?: string } };
    assert.equal(body.error?.code, code, `${where}: ${res.body}`);
    assert.ok((body.error?.message ?? "").length > 10, `${where}: the message must say what to fix`);
  }
  assert.equal(gw.store.dumpForTests(), dump, `${where} changed the store`);
  assert.deepEqual(objectFiles(), files, `${where} changed the object files`);
  assert.equal(JSON.stringify(gw.scheduler.containers.list()), containers, `${where} changed the containers`);
}

before(async () => {
  gw = await createTestGateway();
  keys.admin = gw.adminKey;
  for (const type of ["workspace", "restricted", "worker", "machine"] as const) {
    keys[type] = (await gw.store.tokens.create(gw.workspaceId, type)).key;
  }
  keys.otherWorkspace = (await gw.store.workspaces.create("other", "workspace")).token.key;
  const put = await gw.request("PUT", `/api/v1/object/${sha256(bundle)}`, {
    body: bundle, headers: { "content-type": "application/octet-stream" },
  });
  assert.equal(put.statusCode, 201, put.body);
  ids.object = sha256(bundle);
  const stub = await gw.request("POST", "/api/v1/stub", { body: { name: "hello", type: "endpoint/deployment", objectId: ids.object } });
  ids.stub = stub.json().stub.id;
  ids.app = stub.json().stub.appId;
  ids.deployment = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: ids.stub } })).json().id;
  ids.task = (await gw.store.tasks.create(gw.workspaceId, ids.stub)).id;
  ids.token = (await gw.store.tokens.create(gw.workspaceId, "restricted", "spare")).id;
  const container = await gw.request("POST", "/api/v1/container", { body: { command: ["sleep", "60"] } });
  assert.equal(container.statusCode, 201, container.body);
  ids.container = container.json().id;
  const serveStub = await gw.request("POST", "/api/v1/stub", { body: { name: "dev", type: "endpoint/serve", objectId: ids.object, config: { handler: "app.js:x" } } });
  ids.serveStub = serveStub.json().stub.id;
  const serve = await gw.request("POST", "/api/v1/serve", { body: { stubId: ids.serveStub } });
  assert.equal(serve.statusCode, 201, serve.body);
  ids.serve = serve.json().id;
  // No worker here: the sandbox stays PENDING, which is all these cases need.
  const sandbox = await gw.request("POST", "/api/v1/sandbox", { body: {} });
  assert.equal(sandbox.statusCode, 201, sandbox.body);
  ids.sandbox = sandbox.json().id;
  const created = await gw.request("POST", "/api/v1/machine", { body: { pool: "default" } });
  assert.equal(created.statusCode, 201, created.body);
  Object.assign(machine, { id: created.json().machine.id, key: created.json().token });
});

after(async () => gw.close());

const routes = (): RouteCase[] => [
  { method: "GET", url: "/metrics", pattern: "/metrics" },
  { method: "POST", url: "/api/v1/workspace", pattern: "/api/v1/workspace", body: () => ({ name: "fresh" }) },
  { method: "GET", url: "/api/v1/workspace", pattern: "/api/v1/workspace" },
  { method: "GET", url: "/api/v1/workspace/current", pattern: "/api/v1/workspace/current" },
  { method: "GET", url: "/api/v1/token", pattern: "/api/v1/token" },
  { method: "GET", url: "/api/v1/workspace/current/signing-key", pattern: "/api/v1/workspace/current/signing-key" },
  { method: "POST", url: "/api/v1/token", pattern: "/api/v1/token", body: () => ({ type: "restricted" }) },
  { method: "DELETE", url: `/api/v1/token/${ids.token}`, pattern: "/api/v1/token/:id", byId: true },
  { method: "GET", url: "/api/v1/object", pattern: "/api/v1/object" },
  { method: "HEAD", url: `/api/v1/object/${ids.object}`, pattern: "/api/v1/object/:hash", byId: true },
  { method: "GET", url: `/api/v1/object/${ids.object}`, pattern: "/api/v1/object/:hash", byId: true },
  { method: "PUT", url: `/api/v1/object/${ids.object}`, pattern: "/api/v1/object/:hash" },
  { method: "GET", url: "/api/v1/app", pattern: "/api/v1/app" },
  { method: "GET", url: `/api/v1/app/${ids.app}`, pattern: "/api/v1/app/:id", byId: true },
  { method: "POST", url: "/api/v1/stub", pattern: "/api/v1/stub", body: () => ({ name: "other", type: "taskqueue/deployment", config: { cpu: 1 } }) },
  { method: "GET", url: "/api/v1/stub", pattern: "/api/v1/stub" },
  { method: "GET", url: `/api/v1/stub/${ids.stub}`, pattern: "/api/v1/stub/:id", byId: true },
  { method: "POST", url: "/api/v1/deployment", pattern: "/api/v1/deployment", body: () => ({ stubId: ids.stub }) },
  { method: "GET", url: "/api/v1/deployment", pattern: "/api/v1/deployment" },
  { method: "GET", url: `/api/v1/deployment/${ids.deployment}`, pattern: "/api/v1/deployment/:id", byId: true },
  { method: "POST", url: `/api/v1/deployment/${ids.deployment}/stop`, pattern: "/api/v1/deployment/:id/stop", byId: true },
  { method: "POST", url: `/api/v1/deployment/${ids.deployment}/start`, pattern: "/api/v1/deployment/:id/start", byId: true },
  { method: "POST", url: `/api/v1/deployment/${ids.deployment}/restart`, pattern: "/api/v1/deployment/:id/restart", byId: true },
  { method: "POST", url: `/api/v1/deployment/${ids.deployment}/warm`, pattern: "/api/v1/deployment/:id/warm", byId: true },
  { method: "DELETE", url: `/api/v1/deployment/${ids.deployment}`, pattern: "/api/v1/deployment/:id", byId: true },
  { method: "GET", url: "/api/v1/secret", pattern: "/api/v1/secret" },
  { method: "POST", url: "/api/v1/secret", pattern: "/api/v1/secret", body: () => ({ name: "BAD_INPUT_CASE", value: "v" }) },
  { method: "PUT", url: "/api/v1/secret/BAD_INPUT_CASE", pattern: "/api/v1/secret/:name", body: () => ({ value: "v2" }) },
  { method: "DELETE", url: "/api/v1/secret/BAD_INPUT_CASE", pattern: "/api/v1/secret/:name" },
  // Volumes: not byId (an unknown name is VOLUME_NOT_FOUND, not RESOURCE_NOT_FOUND): volumes.test.ts checks those 404s.
  { method: "POST", url: "/api/v1/volume", pattern: "/api/v1/volume", body: () => ({ name: "bad-input-case" }) },
  { method: "GET", url: "/api/v1/volume", pattern: "/api/v1/volume" },
  { method: "GET", url: "/api/v1/volume/bad-input-case", pattern: "/api/v1/volume/:name" },
  { method: "DELETE", url: "/api/v1/volume/bad-input-case", pattern: "/api/v1/volume/:name" },
  { method: "GET", url: "/api/v1/volume/bad-input-case/ls", pattern: "/api/v1/volume/:name/ls" },
  { method: "GET", url: "/api/v1/volume/bad-input-case/file?path=a", pattern: "/api/v1/volume/:name/file" },
  { method: "PUT", url: "/api/v1/volume/bad-input-case/file?path=a", pattern: "/api/v1/volume/:name/file" },
  { method: "DELETE", url: "/api/v1/volume/bad-input-case/file?path=a", pattern: "/api/v1/volume/:name/file" },
  { method: "POST", url: "/api/v1/volume/bad-input-case/upload/check", pattern: "/api/v1/volume/:name/upload/check", body: () => ({ chunks: [] }) },
  { method: "PUT", url: `/api/v1/volume/bad-input-case/chunk/${"0".repeat(64)}`, pattern: "/api/v1/volume/:name/chunk/:hash" },
  {
    method: "POST", url: "/api/v1/volume/bad-input-case/assemble", pattern: "/api/v1/volume/:name/assemble",
    body: () => ({ path: "a", size: 0, chunks: [], mode: 420, mtime: 0 }),
  },
  { method: "POST", url: "/api/v1/volume/bad-input-case/changes", pattern: "/api/v1/volume/:name/changes", body: () => ({ changes: [] }) },
  { method: "GET", url: `/api/v1/worker/volume/${gw.workspaceId}/blob/${"0".repeat(64)}`, pattern: "/api/v1/worker/volume/:workspaceId/blob/:hash" },
  { method: "POST", url: `/api/v1/worker/volume/${gw.workspaceId}/blob`, pattern: "/api/v1/worker/volume/:workspaceId/blob" },
  { method: "POST", url: `/api/v1/worker/volume/${gw.workspaceId}/bad-input-case/mount`, pattern: "/api/v1/worker/volume/:workspaceId/:name/mount" },
  {
    method: "POST", url: `/api/v1/worker/volume/${gw.workspaceId}/bad-input-case/commit`, pattern: "/api/v1/worker/volume/:workspaceId/:name/commit",
    body: () => ({ volumeId: "v", changes: [] }), key: () => keys.worker,
  },
  { method: "GET", url: "/api/v1/task", pattern: "/api/v1/task" },
  { method: "GET", url: `/api/v1/task/${ids.task}`, pattern: "/api/v1/task/:id", byId: true },
  { method: "GET", url: "/api/v1/pool", pattern: "/api/v1/pool" },
  { method: "POST", url: "/api/v1/pool", pattern: "/api/v1/pool", body: () => ({ name: "gpu" }) },
  { method: "GET", url: "/api/v1/machine", pattern: "/api/v1/machine" },
  { method: "POST", url: "/api/v1/machine", pattern: "/api/v1/machine", body: () => ({ pool: "default" }) },
  { method: "GET", url: `/api/v1/machine/${machine.id}`, pattern: "/api/v1/machine/:id", byId: true },
  { method: "DELETE", url: `/api/v1/machine/${machine.id}`, pattern: "/api/v1/machine/:id", byId: true },
  { method: "POST", url: `/api/v1/machine/${machine.id}/cordon`, pattern: "/api/v1/machine/:id/cordon", byId: true },
  { method: "POST", url: `/api/v1/machine/${machine.id}/uncordon`, pattern: "/api/v1/machine/:id/uncordon", byId: true },
  { method: "POST", url: `/api/v1/machine/${machine.id}/drain`, pattern: "/api/v1/machine/:id/drain", byId: true },
  { method: "POST", url: "/api/v1/machine/register", pattern: "/api/v1/machine/register", body: () => MACHINE_REGISTER, key: () => machine.key },
  { method: "POST", url: "/api/v1/machine/keepalive", pattern: "/api/v1/machine/keepalive", body: () => MACHINE_METRICS, key: () => machine.key },
  { method: "POST", url: "/api/v1/container", pattern: "/api/v1/container", body: () => ({ command: ["true"], gpuCount: 0 }) },
  { method: "GET", url: "/api/v1/container", pattern: "/api/v1/container" },
  { method: "GET", url: `/api/v1/container/${ids.container}`, pattern: "/api/v1/container/:id", byId: true },
  { method: "POST", url: `/api/v1/container/${ids.container}/stop`, pattern: "/api/v1/container/:id/stop", byId: true },
  { method: "GET", url: `/api/v1/container/${ids.container}/logs`, pattern: "/api/v1/container/:id/logs", byId: true },
  { method: "POST", url: `/api/v1/container/${ids.container}/shell`, pattern: "/api/v1/container/:id/shell", body: () => ({ cols: 80, rows: 24 }) },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/shell`, pattern: "/api/v1/sandbox/:id/shell", body: () => ({ cols: 80, rows: 24 }) },
  { method: "GET", url: "/api/v1/shell/not-a-ticket", pattern: "/api/v1/shell/:ticket" },
  { method: "GET", url: `/api/v1/logs?containerId=${ids.container}`, pattern: "/api/v1/logs", byId: true },
  { method: "GET", url: `/api/v1/logs?deploymentId=${ids.deployment}`, pattern: "/api/v1/logs", byId: true },
  { method: "GET", url: `/api/v1/logs?sandboxId=${ids.sandbox}`, pattern: "/api/v1/logs", byId: true },
  { method: "GET", url: "/api/v1/worker", pattern: "/api/v1/worker" },
  { method: "POST", url: "/api/v1/image/build", pattern: "/api/v1/image/build", body: () => ({ spec: { base: { kind: "default" }, steps: [], env: {} } }) },
  { method: "GET", url: "/api/v1/image", pattern: "/api/v1/image" },
  { method: "GET", url: `/api/v1/image/${"e".repeat(32)}`, pattern: "/api/v1/image/:id" },
  { method: "DELETE", url: `/api/v1/image/${"e".repeat(32)}`, pattern: "/api/v1/image/:id" },
  { method: "GET", url: `/api/v1/image/${"e".repeat(32)}/logs`, pattern: "/api/v1/image/:id/logs" },
  { method: "GET", url: `/api/v1/image/${"e".repeat(32)}/blob`, pattern: "/api/v1/image/:id/blob" },
  { method: "PUT", url: `/api/v1/image/${"e".repeat(32)}/blob`, pattern: "/api/v1/image/:id/blob" },
  { method: "GET", url: `/api/v1/worker/object/${"0".repeat(64)}`, pattern: "/api/v1/worker/object/:hash" },
  { method: "POST", url: "/function/hello", pattern: "/function/:name" },
  { method: "POST", url: "/function/hello/v1", pattern: "/function/:name/v:version" },
  { method: "POST", url: `/function/id/${"0".repeat(8)}`, pattern: "/function/id/:stubId" },
  { method: "POST", url: "/taskqueue/hello", pattern: "/taskqueue/:name" },
  { method: "POST", url: "/taskqueue/hello/latest", pattern: "/taskqueue/:name/latest" },
  { method: "POST", url: "/taskqueue/hello/v1", pattern: "/taskqueue/:name/v:version" },
  { method: "POST", url: `/taskqueue/id/${"0".repeat(8)}`, pattern: "/taskqueue/id/:stubId" },
  { method: "POST", url: `/api/v1/task/${ids.task}/cancel`, pattern: "/api/v1/task/:id/cancel", byId: true },
  { method: "GET", url: `/api/v1/task/${ids.task}/subscribe`, pattern: "/api/v1/task/:id/subscribe", byId: true },
  // The dashboard's own routes (api/dashboard.ts); its files need no token.
  { method: "GET", url: "/", pattern: "/", open: true },
  { method: "GET", url: "/dashboard/app.js", pattern: "/dashboard/:file", open: true },
  { method: "GET", url: "/api/v1/whoami", pattern: "/api/v1/whoami" },
  { method: "GET", url: `/api/v1/task/${ids.task}/input`, pattern: "/api/v1/task/:id/input", byId: true },
  { method: "POST", url: `/api/v1/task/${ids.task}/retry`, pattern: "/api/v1/task/:id/retry", byId: true },
  { method: "GET", url: `/api/v1/deployment/${ids.deployment}/series`, pattern: "/api/v1/deployment/:id/series", byId: true },
  { method: "POST", url: "/endpoint/hello", pattern: "/endpoint/:name" },
  { method: "POST", url: "/endpoint/hello/latest", pattern: "/endpoint/:name/latest" },
  { method: "POST", url: "/endpoint/hello/v1", pattern: "/endpoint/:name/v:version" },
  { method: "POST", url: `/endpoint/id/${"0".repeat(8)}`, pattern: "/endpoint/id/:stubId" },
  { method: "POST", url: `/public/${"0".repeat(8)}`, pattern: "/public/:stubId", open: true },
  { method: "POST", url: "/api/v1/sandbox", pattern: "/api/v1/sandbox", body: () => ({ keepWarmSeconds: 60 }) },
  { method: "GET", url: "/api/v1/sandbox", pattern: "/api/v1/sandbox" },
  { method: "GET", url: `/api/v1/sandbox/${ids.sandbox}`, pattern: "/api/v1/sandbox/:id", byId: true },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/terminate`, pattern: "/api/v1/sandbox/:id/terminate", byId: true },
  // Not byId (those cases send no body): sandboxes.test.ts checks their 404s with a body.
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/ttl`, pattern: "/api/v1/sandbox/:id/ttl", body: () => ({ ttlSeconds: 60 }) },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/port`, pattern: "/api/v1/sandbox/:id/port", body: () => ({ port: 8080 }) },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/exec`, pattern: "/api/v1/sandbox/:id/exec", body: () => ({ cmd: "true" }) },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/run-code`, pattern: "/api/v1/sandbox/:id/run-code", body: () => ({ code: "print(1)" }) },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/process/12/kill`, pattern: "/api/v1/sandbox/:id/process/:pid/kill", body: () => ({ signal: "SIGTERM" }) },
  { method: "GET", url: `/api/v1/sandbox/${ids.sandbox}/process`, pattern: "/api/v1/sandbox/:id/process", byId: true },
  { method: "GET", url: `/api/v1/sandbox/${ids.sandbox}/fs/file?path=a.txt`, pattern: "/api/v1/sandbox/:id/fs/file", byId: true },
  { method: "PUT", url: `/api/v1/sandbox/${ids.sandbox}/fs/file?path=a.txt`, pattern: "/api/v1/sandbox/:id/fs/file", byId: true },
  { method: "GET", url: `/api/v1/sandbox/${ids.sandbox}/fs/list?path=.`, pattern: "/api/v1/sandbox/:id/fs/list", byId: true },
  { method: "GET", url: `/api/v1/sandbox/${ids.sandbox}/fs/stat?path=a.txt`, pattern: "/api/v1/sandbox/:id/fs/stat", byId: true },
  { method: "POST", url: `/api/v1/sandbox/${ids.sandbox}/fs/mkdir?path=d`, pattern: "/api/v1/sandbox/:id/fs/mkdir", byId: true },
  { method: "DELETE", url: `/api/v1/sandbox/${ids.sandbox}/fs?path=a.txt`, pattern: "/api/v1/sandbox/:id/fs", byId: true },
  ...["GET", "POST", "PUT", "PATCH", "DELETE"].flatMap((method) => [
    { method, url: `/sandbox/${ids.sandbox}/port/8080`, pattern: "/sandbox/:id/port/:port", open: true },
    { method, url: `/sandbox/${ids.sandbox}/port/8080/x`, pattern: "/sandbox/:id/port/:port/*", open: true },
  ]),
  { method: "POST", url: "/api/v1/serve", pattern: "/api/v1/serve", body: () => ({ stubId: ids.serveStub }) },
  { method: "GET", url: `/api/v1/serve/${ids.serve}`, pattern: "/api/v1/serve/:id", byId: true },
  { method: "POST", url: `/api/v1/serve/${ids.serve}/heartbeat`, pattern: "/api/v1/serve/:id/heartbeat", byId: true },
  // Not byId (those cases send no body): serve-sessions.test.ts checks its 404s with a body.
  { method: "PUT", url: `/api/v1/serve/${ids.serve}/stub`, pattern: "/api/v1/serve/:id/stub", body: () => ({ stubId: ids.serveStub }) },
  { method: "DELETE", url: `/api/v1/serve/${ids.serve}`, pattern: "/api/v1/serve/:id", byId: true },
  { method: "POST", url: `/serve/${ids.serve}`, pattern: "/serve/:id", byId: true },
  // Web apps (webapp.ts): every method below an endpoint's URL with a slash; its exact URL for all but POST.
  ...["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].flatMap((method) => [
    { method, url: "/endpoint/hello/x", pattern: "/endpoint/:name/*" },
    { method, url: "/endpoint/hello/latest/x", pattern: "/endpoint/:name/latest/*" },
    { method, url: "/endpoint/hello/v1/x", pattern: "/endpoint/:name/v:version(^\\d+$)/*" },
    { method, url: `/endpoint/id/${"0".repeat(8)}/x`, pattern: "/endpoint/id/:stubId/*" },
    { method, url: `/public/${"0".repeat(8)}/x`, pattern: "/public/:stubId/*", open: true },
    { method, url: `/serve/${ids.serve}/x`, pattern: "/serve/:id/*", byId: true },
  ]),
  // Pods (pods.ts): every method on and below a pod's URL.
  ...["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].flatMap((method) => [
    { method, url: "/pod/hello", pattern: "/pod/:name" },
    { method, url: "/pod/hello/x", pattern: "/pod/:name/*" },
    { method, url: "/pod/hello/latest/x", pattern: "/pod/:name/latest/*" },
    { method, url: "/pod/hello/v1/x", pattern: "/pod/:name/v:version(^\\d+$)/*" },
    { method, url: `/pod/id/${"0".repeat(8)}`, pattern: "/pod/id/:stubId" },
    { method, url: `/pod/id/${"0".repeat(8)}/x`, pattern: "/pod/id/:stubId/*" },
  ]),
  ...["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"].flatMap((method) => [
    { method, url: "/endpoint/hello", pattern: "/endpoint/:name" },
    { method, url: `/endpoint/id/${"0".repeat(8)}`, pattern: "/endpoint/id/:stubId" },
    { method, url: `/public/${"0".repeat(8)}`, pattern: "/public/:stubId", open: true },
    { method, url: `/serve/${ids.serve}`, pattern: "/serve/:id", byId: true },
  ]),
];

const accessOf = (c: RouteCase) => gw.app.routeCatalogue.find((r) => r.method === c.method && r.url === c.pattern)?.access;
const allowedBy: Record<string, readonly TokenType[]> = {
  read: ["admin", "workspace", "restricted"],
  write: ["admin", "workspace"],
  admin: ["admin"],
  worker: ["admin", "worker", "machine"],
  machine: ["machine"],
};

describe("route table", () => {
  test("covers every registered route, and every route declares its access", () => {
    const covered = new Set(routes().map((c) => `${c.method} ${c.pattern}`));
    covered.add("GET /api/v1/health").add("GET /api/v1/openapi.json");
    for (const r of gw.app.routeCatalogue) {
      assert.ok(covered.has(`${r.method} ${r.url}`), `${r.method} ${r.url} is not in the bad-input table`);
      assert.ok(r.access !== undefined, `${r.method} ${r.url} declares no access`);
    }
  });
});

describe("authentication on every route", () => {
  test("no token, a malformed header, a wrong token, an overlong token: 401", async () => {
    for (const c of routes().filter((r) => !r.open)) {
      await expectRejected(c, { key: null, body: c.body?.() }, 401, "AUTH_TOKEN_MISSING");
      await expectRejected(c, { key: null, body: c.body?.(), headers: { authorization: `Basic ${keys.admin}` } }, 401, "AUTH_TOKEN_MISSING");
      await expectRejected(c, { key: `${keys.admin}x`, body: c.body?.() }, 401, "AUTH_TOKEN_INVALID");
      await expectRejected(c, { key: "b9_".padEnd(5000, "a"), body: c.body?.() }, 401, "AUTH_TOKEN_INVALID");
    }
  });

  test("token types a route does not allow: 403, whatever the body", async () => {
    for (const c of routes().filter((r) => !r.open)) {
      const access = accessOf(c)!;
      for (const type of ["admin", "workspace", "restricted", "worker", "machine"] as const) {
        if (allowedBy[access]?.includes(type)) continue;
        await expectRejected(c, { key: keys[type], body: c.body?.() }, 403, "AUTH_FORBIDDEN");
      }
    }
  });

  test("a revoked token is refused at once", async () => {
    const token = await gw.store.tokens.create(gw.workspaceId, "workspace");
    assert.equal((await gw.request("DELETE", `/api/v1/token/${token.id}`)).statusCode, 200);
    await expectRejected({ method: "GET", url: "/api/v1/deployment" }, { key: token.key }, 401, "AUTH_TOKEN_INVALID");
  });
});

describe("workspace isolation on every route that names a resource", () => {
  test("another workspace's token gets 404 for this workspace's ids", async () => {
    for (const c of routes().filter((r) => r.byId)) {
      await expectRejected(c, { key: keys.otherWorkspace }, 404, "RESOURCE_NOT_FOUND");
    }
  });

  test("unknown ids: 404", async () => {
    for (const c of routes().filter((r) => r.byId)) {
      const url = c.url.replace(/[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{64}/, (m) => (m.length === 64 ? "0".repeat(64) : "00000000-0000-4000-8000-000000000000"));
      await expectRejected({ method: c.method, url }, {}, 404, "RESOURCE_NOT_FOUND");
    }
  });

  test("another workspace's lists hold none of this workspace's rows", async () => {
    for (const url of ["/api/v1/deployment", "/api/v1/stub", "/api/v1/app", "/api/v1/object", "/api/v1/task", "/api/v1/machine", "/api/v1/container", "/api/v1/sandbox"]) {
      const res = await gw.request("GET", url, { key: keys.otherWorkspace });
      assert.equal(res.statusCode, 200, url);
      assert.deepEqual(res.json(), { items: [] }, url);
    }
    const tokens = (await gw.request("GET", "/api/v1/token", { key: keys.otherWorkspace })).json().items as { workspaceId: string }[];
    assert.ok(tokens.length > 0 && tokens.every((t) => t.workspaceId !== gw.workspaceId));
    await expectRejected({ method: "POST", url: "/api/v1/deployment" }, { key: keys.otherWorkspace, body: { stubId: ids.stub } }, 404, "RESOURCE_NOT_FOUND");
    await expectRejected({ method: "POST", url: "/api/v1/stub" }, { key: keys.otherWorkspace, body: { name: "x", type: "endpoint/deployment", objectId: ids.object } }, 404, "RESOURCE_NOT_FOUND");
  });
});

describe("bodies on every JSON route", () => {
  const jsonRoutes = () => routes().filter((c) => c.body);

  test("malformed JSON: 400 INVALID_JSON", async () => {
    for (const c of jsonRoutes()) {
      for (const text of ['{"name": ', "{'a': 1}", "nul", '{"a":1}}']) {
        await expectRejected(c, { key: c.key?.(), body: text, headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
      }
    }
  });

  test("no body, wrong shapes, wrong types, unknown fields: 422 VALIDATION_FAILED", async () => {
    for (const c of jsonRoutes()) {
      const valid = c.body!() as Record<string, unknown>;
      const bad: unknown[] = [[], 42, "text", null, { ...valid, unexpected: true }];
      for (const [k, v] of Object.entries(valid)) {
        bad.push({ ...valid, [k]: typeof v === "string" ? 12 : "12" }, { ...valid, [k]: { nested: v } });
      }
      await expectRejected(c, { key: c.key?.(), headers: { "content-type": "application/json" } }, 422, "VALIDATION_FAILED");
      for (const body of bad) await expectRejected(c, { key: c.key?.(), body: JSON.stringify(body), headers: { "content-type": "application/json" } }, 422, "VALIDATION_FAILED");
    }
  });

  test("bodies over 1 MiB: 413 BODY_TOO_LARGE", async () => {
    for (const c of jsonRoutes()) {
      const body = JSON.stringify({ ...(c.body!() as object), padding: "x".repeat(1_100_000) });
      await expectRejected(c, { key: c.key?.(), body, headers: { "content-type": "application/json" } }, 413, "BODY_TOO_LARGE");
    }
  });

  test("other media types: 415 UNSUPPORTED_MEDIA_TYPE", async () => {
    for (const c of jsonRoutes()) {
      await expectRejected(c, { key: c.key?.(), body: JSON.stringify(c.body!()), headers: { "content-type": "text/plain" } }, 415, "UNSUPPORTED_MEDIA_TYPE");
      await expectRejected(c, { key: c.key?.(), body: Buffer.from(JSON.stringify(c.body!())), headers: { "content-type": "application/octet-stream" } }, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
  });

  test("endpoint calls: unknown names, other workspaces, stopped versions, malformed JSON", async () => {
    await expectRejected({ method: "POST", url: "/endpoint/nope" }, { body: { a: 1 } }, 404, "RESOURCE_NOT_FOUND");
    await expectRejected({ method: "POST", url: "/endpoint/hello/v99" }, { body: { a: 1 } }, 404, "RESOURCE_NOT_FOUND");
    await expectRejected({ method: "POST", url: "/endpoint/hello/vx" }, { body: { a: 1 } }, 422, "VALIDATION_FAILED");
    await expectRejected({ method: "POST", url: "/endpoint/hello" }, { key: keys.otherWorkspace, body: { a: 1 } }, 404, "RESOURCE_NOT_FOUND");
    await expectRejected({ method: "POST", url: "/endpoint/hello" }, { body: '{"a":', headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
    await expectRejected({ method: "POST", url: "/taskqueue/hello" }, { body: { a: 1 } }, 409, "CONFLICT");
    await expectRejected({ method: "POST", url: "/taskqueue/nope" }, { body: { a: 1 } }, 404, "RESOURCE_NOT_FOUND");
  });

  test("/public/:stubId: an authorized, unknown or undeployed stub is a 404 with or without a token, revealing nothing", async () => {
    const route = gw.app.routeCatalogue.find((r) => r.url === "/public/:stubId");
    assert.equal(route?.access, "public");
    const open = (await gw.request("POST", "/api/v1/stub", { body: { name: "open-undeployed", type: "endpoint/deployment", objectId: ids.object, config: { authorized: false } } })).json().stub;
    for (const id of [ids.stub, "00000000-0000-4000-8000-000000000000", "x".repeat(90), open.id]) {
      for (const key of [null, keys.admin, keys.otherWorkspace, "b9_wrong"]) {
        await expectRejected({ method: "POST", url: `/public/${id}` }, { key, body: { a: 1 } }, 404, "RESOURCE_NOT_FOUND");
      }
    }
    const res = await gw.request("POST", `/public/${ids.stub}`, { key: null, body: { a: 1 } });
    assert.doesNotMatch(res.body, /hello|endpoint/, "the 404 names neither the stub nor its kind");
    await expectRejected({ method: "POST", url: `/public/${ids.stub}` }, { key: null, body: '{"a":', headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
  });

  test("web app URLs: a stub that is no web app is a 409 that says how to call it; unknown ones 404; public ones reveal nothing", async () => {
    for (const url of ["/endpoint/hello/x", "/endpoint/hello/latest/x", "/endpoint/hello/v1/x", `/endpoint/id/${ids.stub}/x`]) {
      await expectRejected({ method: "GET", url }, {}, 409, "CONFLICT");
    }
    await expectRejected({ method: "GET", url: "/endpoint/hello" }, {}, 409, "CONFLICT");
    await expectRejected({ method: "GET", url: "/endpoint/nope/x" }, {}, 404, "RESOURCE_NOT_FOUND");
    await expectRejected({ method: "GET", url: "/endpoint/hello/v99/x" }, {}, 404, "RESOURCE_NOT_FOUND");
    for (const key of [null, keys.admin]) await expectRejected({ method: "GET", url: `/public/${ids.stub}/x` }, { key }, 404, "RESOURCE_NOT_FOUND");
  });

  test("/sandbox/:id/port/:port: an unknown sandbox or a port it does not expose is a 404 with or without a token", async () => {
    for (const url of [`/sandbox/${ids.sandbox}/port/8080/`, "/sandbox/00000000-0000-4000-8000-000000000000/port/80/", `/sandbox/${"x".repeat(90)}/port/1/a`]) {
      for (const key of [null, keys.admin, keys.otherWorkspace, "b9_wrong"]) {
        await expectRejected({ method: "GET", url }, { key }, 404, "RESOURCE_NOT_FOUND");
      }
    }
  });

  test("bad query strings: 422", async () => {
    for (const url of [
      "/api/v1/deployment?limit=ten", "/api/v1/deployment?active=yes", "/api/v1/deployment?name=Bad_Name!", "/api/v1/deployment?unknown=1",
      "/api/v1/token?offset=-1", "/api/v1/machine?pool=%2F..", "/api/v1/stub?limit=99999999999",
      "/api/v1/container?active=maybe", `/api/v1/container/${ids.container}/logs?follow=1`,
      `/api/v1/logs?containerId=${ids.container}&limit=ten`, `/api/v1/logs?containerId=${ids.container}&since=yesterday`, "/api/v1/logs?unknown=1&taskId=x",
      "/api/v1/sandbox?active=maybe", `/api/v1/sandbox/${ids.sandbox}?wait=now`, `/api/v1/sandbox/${ids.sandbox}/fs/list`,
      `/api/v1/sandbox/${ids.sandbox}/fs/stat?path=`, `/api/v1/sandbox/${ids.sandbox}/fs/file?path=a&mode=999`,
    ]) {
      await expectRejected({ method: "GET", url }, {}, 422, "VALIDATION_FAILED");
    }
  });

  test("semantic config errors name the field: 422 INVALID_CONFIG", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ cpu: "lots" }, "config.cpu"], [{ cpu: 100 }, "config.cpu"], [{ memory: "16Qi" }, "config.memory"],
      [{ memory: 1 }, "config.memory"], [{ gpu: "GTX1" }, "config.gpu"], [{ gpuCount: 2 }, "config.gpuCount"],
      [{ gpu: "A10G", gpuCount: 0 }, "config.gpuCount"], [{ callbackUrl: "ftp://x" }, "config.callbackUrl"],
      [{ autoscaler: { type: "queue_depth", maxContainers: 2, minContainers: 3 } }, "config.autoscaler.minContainers"],
      [{ when: "* * * * *" }, "config.when"],
    ];
    for (const [config, field] of cases) {
      const dump = gw.store.dumpForTests();
      const res = await gw.request("POST", "/api/v1/stub", { body: { name: "bad", type: "endpoint/deployment", config } });
      assert.equal(res.statusCode, 422, JSON.stringify(config));
      assert.equal(res.json().error.code, "INVALID_CONFIG");
      assert.match(res.json().error.message, new RegExp(`^${field.replace(/\./g, "\\.")}:`));
      assert.equal(gw.store.dumpForTests(), dump);
    }
    for (const when of ["*/5 * * *", "every minute", "@often"]) {
      await expectRejected({ method: "POST", url: "/api/v1/stub" }, { body: { name: "s", type: "schedule/deployment", config: { when } } }, 422, "INVALID_CONFIG");
    }
  });
});
