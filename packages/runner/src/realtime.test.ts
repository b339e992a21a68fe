/**
 * The runner's WebSockets on a real runner process: a realtime handler echoes text, binary and
 * fragmented messages; close codes travel both ways; a handler that throws closes with 1011; a web
 * app accepts with the upgrade function on its Request or refuses with its own Response; the
 * runner's secret and the workload's kind are checked before any upgrade.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
const SECRET = "s3cret";
const AUTH = { authorization: `Bearer ${SECRET}` };

const WORKLOADS = `
const w = (name, handler, config = {}) => ({ __beta9Workload: true, kind: "endpoint", name, config, handler });
const seen = [];
export const echo = w("echo", async (socket, ctx) => {
  for await (const message of socket) {
    if (message === "seen") { await socket.send(JSON.stringify(seen)); continue; }
    if (message === "whoami") { await socket.send(new URL(socket.request.url).pathname + new URL(socket.request.url).search); continue; }
    if (message === "bye") return socket.close(4001, "handler says bye");
    if (message === "throw") throw new Error("handler exploded");
    await socket.send(message);
  }
  const closed = await socket.closed;
  seen.push({ ...closed, aborted: ctx.signal.aborted });
}, { realtime: true });
export const plain = w("plain", () => ({ ok: true }));
export const app = w("app", (request) => {
  const url = new URL(request.url);
  if (url.pathname === "/private") return new Response("no entry", { status: 401 });
  const { socket, response } = request[Symbol.for("beta9.upgradeWebSocket")]();
  void socket.send("welcome to " + url.pathname + " (" + request.headers.get("upgrade") + ")");
  void (async () => { for await (const m of socket) await socket.send(m); })();
  return response;
}, { webApp: true });
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

async function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/health", agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.end();
  });
}

async function runner(exportName: string): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), BETA9_CODE_DIR: codeDir, BETA9_HANDLER: `workloads.mjs:${exportName}`, BETA9_CONCURRENCY: "4", BETA9_RUNNER_SECRET: SECRET },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  while (!(await healthy(port))) {
    if (child.exitCode !== null) throw new Error(`runner exited ${child.exitCode}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return port;
}

async function connect(url: string, headers: Record<string, string> = AUTH): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers, perMessageDeflate: false });
  await once(ws, "open");
  return ws;
}

const next = (ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> =>
  new Promise((resolve) => ws.once("message", (data, binary) => resolve({ data: data as Buffer, binary })));
const closeOf = (ws: WebSocket): Promise<{ code: number; reason: string }> =>
  new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));

/** The HTTP status an upgrade is refused with. */
function refusal(url: string, headers: Record<string, string> = AUTH): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on("open", () => reject(new Error("the upgrade was accepted")));
    ws.on("error", () => undefined);
  });
}

before(() => {
  codeDir = mkdtempSync(join(tmpdir(), "beta9-runner-ws-"));
  writeFileSync(join(codeDir, "workloads.mjs"), WORKLOADS);
});

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(codeDir, { recursive: true, force: true });
});

describe("runner WebSockets", () => {
  it("a realtime handler echoes text, binary and fragmented messages, and sees its path and query", async () => {
    const port = await runner("echo");
    const ws = await connect(`ws://127.0.0.1:${port}/realtime/room/7?user=ann`);
    ws.send("hello");
    assert.deepEqual(await next(ws), { data: Buffer.from("hello"), binary: false });
    ws.send(Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await next(ws), { data: Buffer.from([0, 1, 2, 255]), binary: true });
    ws.send("frag", { fin: false });
    ws.send("mented", { fin: true });
    assert.equal((await next(ws)).data.toString(), "fragmented");
    const big = Buffer.alloc(300_000, 7);
    ws.send(big);
    assert.ok((await next(ws)).data.equals(big));
    ws.send("whoami");
    assert.equal((await next(ws)).data.toString(), "/room/7?user=ann");
    const closed = closeOf(ws);
    ws.close(4321, "client leaves");
    assert.deepEqual(await closed, { code: 4321, reason: "client leaves" }, "the handler answers the client's close with its code");
    const again = await connect(`ws://127.0.0.1:${port}/realtime`);
    again.send("seen");
    assert.deepEqual(JSON.parse((await next(again)).data.toString()), [{ code: 4321, reason: "client leaves", aborted: true }]);
    again.close();
  });

  it("the handler's close code reaches the client; a handler that throws closes with 1011", async () => {
    const port = await runner("echo");
    const ws = await connect(`ws://127.0.0.1:${port}/realtime`);
    const closed = closeOf(ws);
    ws.send("bye");
    assert.deepEqual(await closed, { code: 4001, reason: "handler says bye" });
    const ws2 = await connect(`ws://127.0.0.1:${port}/realtime`);
    const closed2 = closeOf(ws2);
    ws2.send("throw");
    assert.deepEqual(await closed2, { code: 1011, reason: "handler exploded" });
  });

  it("a web app accepts with the upgrade function on its Request, or refuses with its own Response", async () => {
    const port = await runner("app");
    const ws = new WebSocket(`ws://127.0.0.1:${port}/web/chat`, { headers: AUTH });
    const welcome = next(ws);
    await once(ws, "open");
    assert.equal((await welcome).data.toString(), "welcome to /chat (websocket)");
    ws.send("ping");
    assert.equal((await next(ws)).data.toString(), "ping");
    ws.close();
    assert.equal(await refusal(`ws://127.0.0.1:${port}/web/private`), 401);
  });

  it("refuses before upgrading: no secret, a workload that takes no sockets, an unknown route", async () => {
    const echoPort = await runner("echo");
    assert.equal(await refusal(`ws://127.0.0.1:${echoPort}/realtime`, {}), 401);
    assert.equal(await refusal(`ws://127.0.0.1:${echoPort}/invoke`), 404);
    assert.equal(await refusal(`ws://127.0.0.1:${echoPort}/web/x`), 404);
    const plainPort = await runner("plain");
    assert.equal(await refusal(`ws://127.0.0.1:${plainPort}/realtime`), 404);
  });
});
