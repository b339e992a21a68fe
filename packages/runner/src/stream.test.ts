/**
 * Streamed answers and web apps in the runner: each test spawns `node dist/main.js` with a temp
 * code directory holding hand-written workload objects, and reads its answers over raw HTTP.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request, type IncomingMessage } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
const CHUNKS = 2000;
const CHUNK_CHARS = 65_536;

const WORKLOADS = `
import { createHash } from "node:crypto";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const w = (name, handler, extra = {}) => ({ __beta9Workload: true, kind: "endpoint", name, config: {}, handler, ...extra });
const state = { produced: 0, aborted: null };
const text = (s) => new ReadableStream({ start(c) { for (const x of s) c.enqueue(x); c.close(); } });

export const events = w("events", async function* () {
  yield "hello";
  yield { token: "world", n: 2 };
  yield "two\\nlines";
  yield 3;
});
export const syncGen = w("sync-gen", function* () { yield "a"; yield "b"; });
export const textStream = w("text-stream", () => text(["one ", "two"]));
export const byteStream = w("byte-stream", () => text([new Uint8Array([0, 1, 2]), new Uint8Array([255])]));
export const response = w("response", () => new Response(text(["created ", "here"]), {
  status: 201, headers: { "x-app": "yes", "content-type": "text/plain" },
}));
export const failsMid = w("fails-mid", async function* () { yield "first"; throw new Error("model crashed"); });
export const failsFirst = w("fails-first", () => new ReadableStream({ pull() { throw new Error("no bytes today"); } }));
export const plain = w("plain", () => ({ ok: true }));

// Backpressure and disconnects: the handler says how far it got through a second call.
export const probe = w("probe", (input, ctx) => {
  if (input?.status) return state;
  if (input?.forever) return (async function* () {
    try {
      for (let i = 0; ; i++) { yield "tick " + i; await sleep(5); }
    } finally {
      state.aborted = { signal: ctx.signal.aborted, reason: String(ctx.signal.reason?.message ?? ctx.signal.reason) };
    }
  })();
  return (async function* () {
    const chunk = "x".repeat(${CHUNK_CHARS});
    for (let i = 0; i < ${CHUNKS}; i++) { state.produced = i + 1; yield chunk; }
  })();
}, {});

export const queue = w("queue", async function* () { yield 1; }, { kind: "taskqueue" });

export const app = w("app", async (request, ctx) => {
  const url = new URL(request.url);
  if (url.pathname === "/hello") return Response.json({ hello: url.searchParams.get("name"), host: url.host, auth: request.headers.get("authorization"), task: ctx.taskId });
  const user = /^\\/users\\/([^/]+)$/.exec(url.pathname);
  if (user) return Response.json({ id: decodeURIComponent(user[1]), method: request.method });
  if (url.pathname === "/sha" && request.method === "POST") {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of request.body) { hash.update(chunk); bytes += chunk.length; }
    return Response.json({ sha256: hash.digest("hex"), bytes });
  }
  if (url.pathname === "/not-a-response") return { hello: "object" };
  if (url.pathname === "/throws") throw new Error("route exploded");
  return new Response("no route " + url.pathname, { status: 404 });
}, { config: { webApp: true } });
`;

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

/** A runner serving `exportName` (2 slots: a status call can run beside a stream), once healthy. */
async function runner(exportName: string): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), BETA9_CODE_DIR: codeDir, BETA9_HANDLER: `workloads.mjs:${exportName}`, BETA9_CONCURRENCY: "2" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`runner exited ${child.exitCode}: ${stderr}`);
    const ok = await exchange("GET", port, "/health").then((r) => r.status === 200, () => false);
    if (ok) return port;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends a request on a fresh connection; resolves with the response, unread. */
function open(method: string, port: number, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers, agent: false }, resolve);
    req.on("error", reject);
    req.end(body);
  });
}

async function exchange(method: string, port: number, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  const res = await open(method, port, path, body, headers);
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8"), bytes: Buffer.concat(chunks) };
}

const invoke = (port: number, input: unknown, headers: Record<string, string> = {}) =>
  exchange("POST", port, "/invoke", JSON.stringify({ input }), { "content-type": "application/json", ...headers });

const status = async (port: number) => JSON.parse((await invoke(port, { status: true })).text).result as { produced: number; aborted: { signal: boolean; reason: string } | null };

/** Polls until `probe` gives the same value `times` times in a row (the pipeline stopped moving). */
async function settled(probe: () => Promise<number>, times = 4): Promise<number> {
  let last = -1;
  let same = 0;
  for (;;) {
    const value = await probe();
    same = value === last ? same + 1 : 0;
    last = value;
    if (same >= times) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(() => {
  codeDir = mkdtempSync(join(tmpdir(), "beta9-runner-stream-"));
  writeFileSync(join(codeDir, "workloads.mjs"), WORKLOADS);
});

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(codeDir, { recursive: true, force: true });
});

describe("runner streaming", () => {
  it("an async generator streams as Server-Sent Events, or NDJSON when Accept asks; a sync generator too", async () => {
    const port = await runner("events");
    const sse = await invoke(port, null);
    assert.equal(sse.status, 200);
    assert.equal(sse.headers["x-beta9-stream"], "events");
    assert.match(String(sse.headers["content-type"]), /^text\/event-stream/);
    assert.equal(sse.text, 'data: hello\n\ndata: {"token":"world","n":2}\n\ndata: two\ndata: lines\n\ndata: 3\n\n');
    const nd = await invoke(port, null, { accept: "application/x-ndjson" });
    assert.equal(nd.headers["content-type"], "application/x-ndjson");
    assert.deepEqual(nd.text.trim().split("\n").map((l) => JSON.parse(l)), ["hello", { token: "world", n: 2 }, "two\nlines", 3]);
    const syncPort = await runner("syncGen");
    assert.equal((await invoke(syncPort, null)).text, "data: a\n\ndata: b\n\n");
  });

  it("a ReadableStream streams raw (text/plain for strings, octet-stream for bytes); a Response keeps its status and headers", async () => {
    const text = await invoke(await runner("textStream"), null);
    assert.deepEqual([text.status, text.headers["content-type"], text.headers["x-beta9-stream"], text.text], [200, "text/plain; charset=utf-8", "bytes", "one two"]);
    const bytes = await invoke(await runner("byteStream"), null);
    assert.deepEqual([bytes.headers["content-type"], [...bytes.bytes]], ["application/octet-stream", [0, 1, 2, 255]]);
    const res = await invoke(await runner("response"), null);
    assert.deepEqual([res.status, res.headers["x-app"], res.headers["content-type"], res.headers["x-beta9-stream"], res.text], [201, "yes", "text/plain", "response", "created here"]);
    const plain = await invoke(await runner("plain"), null);
    assert.deepEqual([plain.headers["x-beta9-stream"], plain.text], [undefined, '{"result":{"ok":true}}'], "plain results keep the JSON answer");
  });

  it("a handler failing mid-stream ends the stream with an error event; failing before its first byte is a plain 500", async () => {
    const port = await runner("failsMid");
    const sse = await invoke(port, null);
    assert.equal(sse.text, 'data: first\n\nevent: error\ndata: {"code":"HANDLER_ERROR","message":"model crashed"}\n\n');
    const nd = await invoke(port, null, { accept: "application/x-ndjson" });
    assert.deepEqual(nd.text.trim().split("\n").map((l) => JSON.parse(l)), ["first", { error: { code: "HANDLER_ERROR", message: "model crashed" } }]);
    const early = await invoke(await runner("failsFirst"), null);
    assert.equal(early.status, 500);
    assert.equal(early.headers["x-beta9-stream"], undefined);
    assert.equal(JSON.parse(early.text).error.message, "no bytes today");
  });

  it("a caller that does not read pauses the handler (bounded, not every chunk made); reading on gets every byte", async () => {
    const port = await runner("probe");
    const res = await open("POST", port, "/invoke", JSON.stringify({ input: {} }), { "content-type": "application/json" });
    res.pause();
    const produced = await settled(async () => (await status(port)).produced);
    assert.ok(produced < CHUNKS, `the handler made ${produced} of ${CHUNKS} chunks while nobody read`);
    process.stdout.write(`# paused after ${produced} of ${CHUNKS} chunks of ${CHUNK_CHARS} chars\n`);
    let bytes = 0;
    for await (const chunk of res) bytes += (chunk as Buffer).length;
    assert.equal(bytes, CHUNKS * (CHUNK_CHARS + "data: \n\n".length));
    assert.equal((await status(port)).produced, CHUNKS);
  });

  it("a caller that goes away aborts ctx.signal and ends the generator (its finally runs)", async () => {
    const port = await runner("probe");
    const res = await open("POST", port, "/invoke", JSON.stringify({ input: { forever: true } }), { "content-type": "application/json" });
    let seen = "";
    for await (const chunk of res) {
      seen += String(chunk);
      if (seen.includes("tick 3")) break; // leaving the loop destroys the response: the connection closes
    }
    let aborted = (await status(port)).aborted;
    while (!aborted) {
      await new Promise((r) => setTimeout(r, 20));
      aborted = (await status(port)).aborted;
    }
    assert.deepEqual(aborted, { signal: true, reason: "the caller closed the connection" });
  });

  it("a task queue's handler returning a stream is STREAM_NOT_SUPPORTED, on /invoke and /invoke-batch", async () => {
    const port = await runner("queue");
    const one = await invoke(port, null);
    assert.equal(one.status, 500);
    const { error } = JSON.parse(one.text) as { error: { code: string; message: string } };
    assert.equal(error.code, "STREAM_NOT_SUPPORTED");
    assert.match(error.message, /taskQueue\(\) "queue" returned an async iterable: only endpoint\(\) handlers stream/);
    const batch = await exchange("POST", port, "/invoke-batch", JSON.stringify({ tasks: [{ id: "t1", input: 1 }] }), { "content-type": "application/json" });
    assert.equal(JSON.parse(batch.text.trim()).body.error.code, "STREAM_NOT_SUPPORTED");
  });
});

describe("runner web apps", () => {
  it("hands the app a Request with its path, query, headers and body; streams its Response back", async () => {
    const port = await runner("app");
    const hello = await exchange("GET", port, "/web/hello?name=ada", undefined, {
      "x-forwarded-host": "gw.example:1994", "x-beta9-authorization": "Bearer app-token", "x-beta9-task-id": "t-7",
    });
    assert.equal(hello.status, 200);
    assert.equal(hello.headers["x-beta9-stream"], "response");
    assert.deepEqual(JSON.parse(hello.text), { hello: "ada", host: "gw.example:1994", auth: "Bearer app-token", task: "t-7" });
    assert.deepEqual(JSON.parse((await exchange("DELETE", port, "/web/users/a%20b")).text), { id: "a b", method: "DELETE" });
    const body = Buffer.alloc(5 * 1024 * 1024, 7);
    const sha = await exchange("POST", port, "/web/sha", body, { "content-type": "application/octet-stream" });
    assert.deepEqual(JSON.parse(sha.text), { sha256: createHash("sha256").update(body).digest("hex"), bytes: body.length });
    const missing = await exchange("GET", port, "/web/nowhere");
    assert.deepEqual([missing.status, missing.text], [404, "no route /nowhere"]);
  });

  it("a non-Response is 502 WEBAPP_BAD_RESPONSE, a throw is 500 HANDLER_ERROR, and /web/.. never reaches the runner's routes", async () => {
    const port = await runner("app");
    const bad = await exchange("GET", port, "/web/not-a-response");
    assert.equal(bad.status, 502);
    assert.equal(bad.headers["x-beta9-stream"], undefined);
    const { error } = JSON.parse(bad.text) as { error: { code: string; message: string } };
    assert.equal(error.code, "WEBAPP_BAD_RESPONSE");
    assert.match(error.message, /web app "app" answered GET \/not-a-response with an object \(Object\); return a Response/);
    const thrown = await exchange("GET", port, "/web/throws");
    assert.deepEqual([thrown.status, JSON.parse(thrown.text).error.code], [500, "HANDLER_ERROR"]);
    const dotted = await exchange("POST", port, "/web/../invoke", "{}", { "content-type": "application/json" });
    assert.deepEqual([dotted.status, dotted.text], [404, "no route /invoke"], "the app's own /invoke, not the runner's");
    const notWeb = await exchange("GET", await runner("plain"), "/web/x");
    assert.equal(JSON.parse(notWeb.text).error.code, "NOT_A_WEB_APP");
  });
});
