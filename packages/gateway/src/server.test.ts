/** The gateway as a process: real sockets, kill -9 and restart on the same data directory. */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DataDirLockedError, startGateway } from "./server.js";
import { makeTar, sha256 } from "./testing/tar.js";

const childScript = fileURLToPath(new URL("./testing/gateway-child.js", import.meta.url));
const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "beta9-server-test-"));
  dirs.push(d);
  return d;
}

async function spawnGateway(dataDir: string): Promise<{ child: ChildProcess; url: string; adminKey?: string }> {
  const child = spawn(process.execPath, [childScript, dataDir], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`gateway exited with ${code} before listening`)));
  });
  return { child, ...JSON.parse(line) };
}

async function call(url: string, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": Buffer.isBuffer(body) ? "application/octet-stream" : "application/json" }) },
    ...(body !== undefined && { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, text };
}

test("kill -9 and restart on the same data dir: tokens, stubs, deployments and objects are intact", async () => {
  const dataDir = tempDir();
  const first = await spawnGateway(dataDir);
  assert.ok(first.adminKey, "the first start bootstraps an admin token");
  const key = first.adminKey!;
  const token = (await call(first.url, key, "POST", "/api/v1/token", { type: "workspace", name: "kept" })).json;
  const bundle = makeTar([{ name: "main.ts", data: "export default 1;\n" }], { gzip: true });
  assert.equal((await call(first.url, key, "PUT", `/api/v1/object/${sha256(bundle)}`, bundle)).status, 201);
  const stub = (await call(first.url, key, "POST", "/api/v1/stub", { name: "kept", type: "endpoint/deployment", objectId: sha256(bundle), config: { cpu: 2 } })).json.stub;
  const dep = (await call(first.url, key, "POST", "/api/v1/deployment", { stubId: stub.id })).json;
  await call(first.url, key, "POST", `/api/v1/deployment/${dep.id}/stop`);
  // A task accepted with 200 while no worker can run it must still be there after the crash.
  const queue = (await call(first.url, key, "POST", "/api/v1/stub", { name: "jobs", type: "taskqueue/deployment", objectId: sha256(bundle), config: { handler: "main.js:jobs" } })).json.stub;
  await call(first.url, key, "POST", "/api/v1/deployment", { stubId: queue.id });
  const put = await call(first.url, key, "POST", "/taskqueue/jobs", { n: 1 });
  assert.equal(put.status, 200, put.text);
  const taskId = put.json.task_id as string;

  first.child.kill("SIGKILL");
  await new Promise((resolve) => first.child.once("exit", resolve));

  const second = await spawnGateway(dataDir);
  assert.equal(second.adminKey, undefined, "no second bootstrap on a non-empty store");
  assert.equal((await call(second.url, key, "GET", "/api/v1/health")).status, 200);
  assert.equal((await call(second.url, token.key, "GET", "/api/v1/deployment")).status, 200, "a token made before the kill works");
  const deps = (await call(second.url, key, "GET", "/api/v1/deployment?name=kept")).json.items;
  assert.equal(deps.length, 1);
  assert.deepEqual({ id: deps[0].id, version: deps[0].version, active: deps[0].active }, { id: dep.id, version: 1, active: false });
  assert.deepEqual((await call(second.url, key, "GET", `/api/v1/stub/${stub.id}`)).json, stub);
  const task = (await call(second.url, key, "GET", `/api/v1/task/${taskId}`)).json;
  assert.deepEqual([task.id, task.status, task.stubId], [taskId, "PENDING", queue.id], "the accepted task survived and waits for a worker");
  const bytes = Buffer.from(await (await fetch(`${second.url}/api/v1/object/${sha256(bundle)}`, { headers: { authorization: `Bearer ${key}` } })).arrayBuffer());
  assert.ok(bytes.equals(bundle));
  second.child.kill("SIGTERM");
  await new Promise((resolve) => second.child.once("exit", resolve));
});

test("a second gateway on a data dir in use is refused; a stale lock is taken over", async () => {
  const dataDir = tempDir();
  const running = await startGateway({ dataDir, port: 0, logLevel: "silent" });
  try {
    await assert.rejects(startGateway({ dataDir, port: 0, logLevel: "silent" }), DataDirLockedError);
  } finally {
    await running.close();
  }
  const again = await startGateway({ dataDir, port: 0, logLevel: "silent" });
  assert.equal(again.bootstrap, undefined);
  await again.close();
});

test("a streamed upload without Content-Length is cut off at the limit and leaves no temp file", async () => {
  const dataDir = tempDir();
  const { child, url, adminKey } = await spawnGateway(dataDir);
  const target = new URL(`${url}/api/v1/object/${"a".repeat(64)}`);
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(target, { method: "PUT", headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/octet-stream" } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    const chunk = Buffer.alloc(16 * 1024, 7);
    let sent = 0;
    const pump = () => {
      while (sent < 40) {
        sent++;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(status, 413);
  assert.deepEqual(readdirSync(join(dataDir, "objects", "tmp")), []);
  child.kill("SIGTERM");
  await new Promise((resolve) => child.once("exit", resolve));
});
