/**
 * End-to-end tests of the runner: each test spawns `node dist/main.js` on a free port with a temp
 * code directory holding hand-written workload objects, and talks HTTP to it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { untagLogLine } from "@beta9/protocol";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

const WORKLOADS = `
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
const dir = fileURLToPath(new URL(".", import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const w = (name, handler, extra = {}) => ({ __beta9Workload: true, kind: "endpoint", name, config: {}, handler, ...extra });
async function until(file) { while (!existsSync(join(dir, file))) await sleep(10); }

export const echo = w("echo", (input, ctx) => ({ input, taskId: ctx.taskId, containerId: ctx.containerId, retries: ctx.retries }));
export const nothing = w("nothing", () => undefined);
export const fails = w("fails", () => { throw new Error("model exploded"); });
export const gated = w("gated", (input, ctx) => ({ onStartValue: ctx.onStartValue }), {
  onStart: async () => { await until("go"); return { model: "loaded" }; },
});
export const blocking = w("blocking", async (input, ctx) => {
  writeFileSync(join(dir, "started-" + ctx.taskId), "");
  while (!existsSync(join(dir, "release-" + ctx.taskId))) {
    if (ctx.signal.aborted) throw new Error("aborted: " + ctx.signal.reason?.message);
    await sleep(10);
  }
  return "released";
});
export const validated = w("validated", (input) => input.n * 2, {
  validateInput: (input) => typeof input?.n === "number" ? undefined : "input.n: expected a number, got " + JSON.stringify(input?.n),
});
export const badStart = w("bad-start", () => 1, { onStart: () => { throw new Error("no GPU found"); } });
export const helper = () => 1;
export const VERSION = "1.0";
`;

interface Runner {
  child: ChildProcess;
  port: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const children = new Set<ChildProcess>();
let codeDir: string;

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function spawnRunner(exportName: string | undefined, env: Record<string, string> = {}): Promise<Runner> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? "",
      PORT: String(port),
      BETA9_CODE_DIR: codeDir,
      BETA9_CONTAINER_ID: "ctr-test",
      ...(exportName && { BETA9_HANDLER: `workloads.mjs:${exportName}` }),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = once(child, "exit").then(([code]) => code as number | null);
  return { child, port, stdout: () => out, stderr: () => err, exited };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * One HTTP exchange on a fresh connection (agent: false). fetch's shared keep-alive pool could
 * hand a later test a socket to a runner that already exited on a reused port.
 */
function call(method: string, port: number, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        } catch (err) {
          reject(err);
        }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const get = (port: number, path: string) => call("GET", port, path);

const post = (port: number, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  call("POST", port, path, body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body), {
    "content-type": "application/json",
    ...headers,
  });

async function ready(runner: Runner): Promise<void> {
  await waitFor("health 200", async () => {
    if (runner.child.exitCode !== null) throw new Error(`runner exited ${runner.child.exitCode}: ${runner.stderr()}`);
    try {
      return (await get(runner.port, "/health")).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
}

const invoke = (port: number, input: unknown, taskId?: string) =>
  post(port, "/invoke", { input }, taskId ? { "x-beta9-task-id": taskId } : {});

before(() => {
  codeDir = mkdtempSync(join(tmpdir(), "beta9-runner-test-"));
  writeFileSync(join(codeDir, "workloads.mjs"), WORKLOADS);
});

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(codeDir, { recursive: true, force: true });
});

describe("runner", () => {
  it("answers health 503 while onStart runs, then 200, and passes onStart's value to ctx", async () => {
    const runner = await spawnRunner("gated");
    const first = await waitFor("health 503", async () => {
      try {
        return await get(runner.port, "/health");
      } catch {
        return undefined;
      }
    });
    assert.deepEqual(first, { status: 503, body: { status: "starting" } });
    assert.equal((await invoke(runner.port, 1)).status, 503);
    writeFileSync(join(codeDir, "go"), "");
    await ready(runner);
    const health = await get(runner.port, "/health");
    assert.equal(health.body.status, "ok");
    assert.equal(health.body.containerId, "ctr-test");
    assert.deepEqual(await invoke(runner.port, null), { status: 200, body: { result: { onStartValue: { model: "loaded" } } } });
    assert.match(runner.stdout(), /^runner ready: workloads\.mjs:gated \(endpoint gated\)\n$/);
  });

  it("returns the handler's result with the task id and container id in ctx", async () => {
    const runner = await spawnRunner("echo");
    await ready(runner);
    const res = await invoke(runner.port, { text: "hi" }, "task-42");
    assert.deepEqual(res, { status: 200, body: { result: { input: { text: "hi" }, taskId: "task-42", containerId: "ctr-test", retries: 0 } } });
    const retried = await post(runner.port, "/invoke", { input: 1 }, { "x-beta9-task-id": "task-43", "x-beta9-task-retries": "2" });
    assert.equal(retried.body.result.retries, 2, "ctx.retries counts the failed attempts before this one");
    const generated = await invoke(runner.port, 7);
    assert.match(generated.body.result.taskId, /^[0-9a-f-]{36}$/);
  });

  it("with BETA9_RUNNER_SECRET, every route but /health answers only its gateway's bearer (401 otherwise)", async () => {
    const runner = await spawnRunner("echo", { BETA9_RUNNER_SECRET: "s3cret" });
    await ready(runner);
    assert.equal((await invoke(runner.port, 1)).status, 401, "no bearer");
    const wrong = await post(runner.port, "/invoke", { input: 1 }, { authorization: "Bearer nope" });
    assert.deepEqual([wrong.status, wrong.body.error.code], [401, "AUTH_TOKEN_INVALID"]);
    assert.equal((await post(runner.port, "/cancel/t1", undefined, { authorization: "Bearer nope" })).status, 401);
    assert.equal((await post(runner.port, "/invoke-batch", { tasks: [] }, { authorization: "Bearer nope" })).status, 401);
    const right = await post(runner.port, "/invoke", { input: 1 }, { authorization: "Bearer s3cret" });
    assert.equal(right.status, 200);
    assert.equal((await get(runner.port, "/health")).status, 200, "health stays open");
  });

  it("answers 400 for malformed JSON, 413 for an oversized body, 404 for unknown routes", async () => {
    const runner = await spawnRunner("echo");
    await ready(runner);
    const bad = await post(runner.port, "/invoke", "{not json");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, "INVALID_JSON");
    assert.equal((await post(runner.port, "/invoke", "[1]")).body.error.code, "INVALID_JSON");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ port: runner.port, host: "127.0.0.1", path: "/invoke", method: "POST", headers: { "content-length": String(33 * 1024 * 1024) } });
      req.on("response", (res) => resolve(res.statusCode ?? 0));
      req.on("error", reject);
      req.flushHeaders();
    });
    assert.equal(status, 413);
    assert.equal((await get(runner.port, "/nope")).status, 404);
    assert.equal((await get(runner.port, "/invoke")).status, 405);
    assert.equal((await post(runner.port, "/cancel/unknown-task")).status, 404);
  });

  it("turns undefined into null and a throw into 500 HANDLER_ERROR with the message", async () => {
    const nothing = await spawnRunner("nothing");
    const fails = await spawnRunner("fails");
    await Promise.all([ready(nothing), ready(fails)]);
    assert.deepEqual(await invoke(nothing.port, 1), { status: 200, body: { result: null } });
    const res = await invoke(fails.port, 1, "task-7");
    assert.equal(res.status, 500);
    assert.equal(res.body.error.code, "HANDLER_ERROR");
    assert.equal(res.body.error.message, "model exploded");
    assert.match(res.body.error.stack, /workloads\.mjs/);
    // Read as the worker does: each line without its task tag (task-log.ts).
    const untagged = () => fails.stderr().split("\n").map((l) => untagLogLine(l).line).join("\n");
    await waitFor("the stack in the container log", async () => (/task task-7 failed: Error: model exploded\n\s+at .*workloads\.mjs/.test(untagged()) ? true : undefined));
    assert.equal(untagLogLine(fails.stderr().split("\n").find((l) => l.includes("model exploded"))!).taskId, "task-7", "the failure is tagged with its task");
  });

  it("runs a batch (/invoke-batch): one NDJSON line per task with what /invoke would answer; BUSY past its slots", async () => {
    const runner = await spawnRunner("validated", { BETA9_CONCURRENCY: "2" });
    await ready(runner);
    const text = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: runner.port, path: "/invoke-batch", method: "POST", headers: { "content-type": "application/json" }, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), text: body }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(JSON.stringify({ tasks: [{ id: "t1", input: { n: 3 } }, { id: "t2", input: { n: "3" } }, { id: "t3", input: { n: 4 } }] }));
    });
    assert.equal(text.status, 200);
    assert.equal(text.type, "application/x-ndjson");
    assert.ok(text.text.endsWith("\n"));
    const lines = text.text.trim().split("\n").map((l) => JSON.parse(l) as { id: string; status: number; body: any }).sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(lines.map((l) => [l.id, l.status]), [["t1", 200], ["t2", 422], ["t3", 503]]);
    assert.deepEqual(lines[0]!.body, { result: 6 });
    assert.equal(lines[1]!.body.error.code, "INPUT_INVALID");
    assert.equal(lines[2]!.body.error.code, "BUSY");
    assert.equal((await post(runner.port, "/invoke-batch", { tasks: [{ input: 1 }] })).status, 400);
  });

  it("answers 422 INPUT_INVALID naming the field when validateInput finds a problem", async () => {
    const runner = await spawnRunner("validated");
    await ready(runner);
    const res = await invoke(runner.port, { n: "3" });
    assert.equal(res.status, 422);
    assert.deepEqual(res.body.error, { code: "INPUT_INVALID", message: 'input.n: expected a number, got "3"' });
    assert.deepEqual(await invoke(runner.port, { n: 3 }), { status: 200, body: { result: 6 } });
  });

  it("with concurrency 1 answers a second invoke 503 BUSY, and cancel aborts ctx.signal", async () => {
    const runner = await spawnRunner("blocking", { BETA9_CONCURRENCY: "1" });
    await ready(runner);
    const first = invoke(runner.port, null, "task-a");
    await waitFor("task-a to start", () => (existsSync(join(codeDir, "started-task-a")) ? true : undefined));
    const second = await invoke(runner.port, null, "task-b");
    assert.equal(second.status, 503);
    assert.equal(second.body.error.code, "BUSY");
    assert.equal((await post(runner.port, "/cancel/task-a")).status, 204);
    const res = await first;
    assert.equal(res.status, 500);
    assert.equal(res.body.error.message, "aborted: task task-a was cancelled");
    writeFileSync(join(codeDir, "release-task-c"), "");
    assert.deepEqual(await invoke(runner.port, null, "task-c"), { status: 200, body: { result: "released" } });
  });

  it("on SIGTERM refuses new work, waits for the in-flight invocation, then exits 0", async () => {
    const runner = await spawnRunner("blocking", { BETA9_CONCURRENCY: "2" });
    await ready(runner);
    const inFlight = invoke(runner.port, null, "task-t");
    await waitFor("task-t to start", () => (existsSync(join(codeDir, "started-task-t")) ? true : undefined));
    runner.child.kill("SIGTERM");
    // The signal lands asynchronously; an invoke sent before it would be accepted and block.
    const health = await waitFor("health to say stopping", async () => {
      const res = await get(runner.port, "/health");
      return res.status === 503 ? res : undefined;
    });
    assert.deepEqual(health, { status: 503, body: { status: "stopping" } });
    const refused = await invoke(runner.port, null, "task-u");
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, "SHUTTING_DOWN");
    assert.equal(runner.child.exitCode, null);
    writeFileSync(join(codeDir, "release-task-t"), "");
    assert.deepEqual(await inFlight, { status: 200, body: { result: "released" } });
    assert.equal(await runner.exited, 0);
  });

  it("on SIGTERM aborts invocations still running after BETA9_GRACE_MS and exits 0", async () => {
    const runner = await spawnRunner("blocking", { BETA9_GRACE_MS: "100" });
    await ready(runner);
    void invoke(runner.port, null, "task-g").catch(() => undefined);
    await waitFor("task-g to start", () => (existsSync(join(codeDir, "started-task-g")) ? true : undefined));
    runner.child.kill("SIGTERM");
    assert.equal(await runner.exited, 0);
    assert.match(runner.stderr(), /1 invocation\(s\) still running after 100 ms/);
  });

  it("exits 1 listing the module's exports when the export is missing", async () => {
    const runner = await spawnRunner("nope");
    assert.equal(await runner.exited, 1);
    const err = runner.stderr();
    assert.match(err, /workloads\.mjs:nope/);
    assert.match(err, /has no export "nope"/);
    assert.match(err, /echo \(endpoint "echo"\)/);
    assert.match(err, /helper \(a function/);
    assert.match(err, /VERSION \(a string\)/);
  });

  it("exits 1 when the export is not a workload, or onStart throws, or the settings are bad", async () => {
    const helper = await spawnRunner("helper");
    const badStart = await spawnRunner("badStart");
    const badEnv = await spawnRunner("echo", { BETA9_CONCURRENCY: "zero" });
    const missingFile = await spawnRunner(undefined, { BETA9_HANDLER: "missing.js:x" });
    assert.deepEqual(await Promise.all([helper.exited, badStart.exited, badEnv.exited, missingFile.exited]), [1, 1, 1, 1]);
    assert.match(helper.stderr(), /export "helper" is a function \(not wrapped in endpoint\(\)/);
    assert.match(badStart.stderr(), /onStart of endpoint "bad-start" \(workloads\.mjs:badStart\) failed:\nError: no GPU found/);
    assert.match(badEnv.stderr(), /BETA9_CONCURRENCY="zero" is not valid/);
    assert.match(missingFile.stderr(), /missing\.js does not exist/);
  });

  it("without BETA9_HANDLER only serves GET /health", async () => {
    const runner = await spawnRunner(undefined);
    await ready(runner);
    const health = await get(runner.port, "/health");
    assert.equal(health.body.status, "ok");
    assert.equal((await invoke(runner.port, 1)).status, 503);
    runner.child.kill("SIGTERM");
    assert.equal(await runner.exited, 0);
  });
});
