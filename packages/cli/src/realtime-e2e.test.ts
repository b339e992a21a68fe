/**
 * WebSockets end to end on real parts: a gateway, two runc workers (one reached directly, one only
 * through its tunnel, as a worker behind NAT), code deployed with the `beta9` CLI. Echo on a
 * realtime endpoint and a web app, close codes both ways, auth as for HTTP (public stays public),
 * bounded messages (1009) and sockets per workspace (1013), an idle socket keeping its container
 * warm past keep-warm (and its close letting it go), a clear 400 for a stub that takes no sockets,
 * and an exposed sandbox port upgraded through the daemon. Skipped where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { WebSocket } from "ws";
import { Client, Image, Sandbox } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-ws-e2e-"));
const hostBefore = captureHostState();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MESSAGE_LIMIT = 64 * 1024;
const SOCKET_LIMIT = 4;

const APP = `
import { endpoint, Image, realtime, upgradeWebSocket, webApp } from ${JSON.stringify(sdk)};
const options = (name, extra = {}) => ({
  name, image: Image.scratch(), cpu: 0.25, memory: "256Mi", concurrentRequests: ${SOCKET_LIMIT}, autoscaler: { maxContainers: 1, tasksPerContainer: ${SOCKET_LIMIT} }, ...extra,
});
const seen = [];
const echo = async (socket, ctx) => {
  for await (const message of socket) {
    if (message === "seen") { await socket.send(JSON.stringify(seen)); continue; }
    if (message === "where") { await socket.send(new URL(socket.request.url).pathname + new URL(socket.request.url).search); continue; }
    if (message === "bye") return socket.close(4001, "handler says bye");
    await socket.send(message);
  }
  seen.push({ ...(await socket.closed), aborted: ctx.signal.aborted });
};
export const direct = realtime(options("ws-direct"), echo);
export const tunnelled = realtime(options("ws-tunnelled", { pool: "wstun" }), echo);
export const open = realtime(options("ws-open", { authorized: false }), echo);
export const warm = realtime(options("ws-warm", { keepWarmSeconds: 1 }), echo);
export const json = endpoint(options("ws-json"), () => ({ ok: true }));
export const chat = webApp(options("ws-chat"), (request) => {
  if (request.headers.get("upgrade") !== "websocket") return new Response("connect with a WebSocket", { status: 426 });
  const { socket, response } = upgradeWebSocket(request);
  void socket.send("welcome to " + new URL(request.url).pathname);
  void (async () => { for await (const m of socket) await socket.send(m); })();
  return response;
});
`;

/** A raw WebSocket echo server for the sandbox (no packages there): one frame per message, close frames echoed. */
const SANDBOX_SERVER = `
import { createServer } from "node:http";
import { createHash } from "node:crypto";
const server = createServer((_req, res) => res.end("plain http"));
server.on("upgrade", (req, socket) => {
  const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  // It also tries to set a cookie for the whole domain and to negotiate an extension it was not offered.
  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept +
    "\\r\\nSet-Cookie: sid=1; Domain=example.test; Path=/\\r\\nSec-WebSocket-Extensions: permessage-deflate\\r\\n\\r\\n");
  let buf = Buffer.alloc(0);
  socket.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 127, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      const op = buf[0] & 15;
      buf = buf.subarray(off + 4 + len);
      const out = op === 1 ? Buffer.from("sandbox: " + payload) : payload;
      socket.write(Buffer.concat([out.length < 126 ? Buffer.from([0x80 | op, out.length]) : Buffer.from([0x80 | op, 126, out.length >> 8, out.length & 255]), out]));
      if (op === 8) socket.end();
    }
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1");
`;

function beta9(gateway: RunningGateway, key: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const next = (ws: WebSocket) => new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
const closeOf = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));

/** The HTTP answer an upgrade is refused with: status and body. */
function refusal(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on("open", () => reject(new Error(`the upgrade to ${url} was accepted`)));
    ws.on("error", () => undefined);
  });
}

describe("WebSockets end to end (gateway + runc workers + CLI)", { skip }, () => {
  let gateway: RunningGateway;
  let client: Client;
  let key: string;
  let auth: Record<string, string>;
  let wsBase: string;
  const workers: StartedWorker[] = [];
  const stubs: Record<string, string> = {};
  const sockets: WebSocket[] = [];

  before(async () => {
    gateway = await startGateway({
      dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000,
      quotas: { webSockets: SOCKET_LIMIT, webSocketMessageBytes: MESSAGE_LIMIT },
    });
    key = gateway.bootstrap!.token.key;
    auth = { authorization: `Bearer ${key}` };
    wsBase = gateway.url.replace(/^http/, "ws");
    client = new Client({ gateway: gateway.url, token: key });
    for (const [id, pool, subnet, reachable] of [["ws-direct", "default", "10.219.233.0/24", true], ["ws-tun", "wstun", "10.219.234.0/24", false]] as const) {
      const worker = await startWorker({
        gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, id), logger: pino({ level: "silent" }),
        runtime: "runc", name: id.replace("-", "").slice(0, 8), subnet, workerId: id, pool, reachable,
      });
      workers.push(worker);
      await worker.connected;
    }
    const root = join(dir, "app");
    mkdirSync(root);
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(root, "app.ts"), APP);
    for (const name of ["direct", "tunnelled", "open", "warm", "json", "chat"]) {
      const deployed = await beta9(gateway, key, ["deploy", `${join(root, "app.ts")}:${name}`, "--json", "-q"]);
      assert.equal(deployed.code, 0, deployed.stderr);
      stubs[name] = (JSON.parse(deployed.stdout) as { stubId: string }).stubId;
    }
  });

  after(async () => {
    for (const ws of sockets) ws.terminate();
    await client?.close();
    for (const w of workers) await w.close(1000);
    await gateway?.close();
  });

  const connect = async (path: string, headers: Record<string, string> = auth) => {
    const ws = new WebSocket(`${wsBase}${path}`, { headers, perMessageDeflate: false });
    sockets.push(ws);
    await once(ws, "open");
    return ws;
  };

  for (const name of ["ws-direct", "ws-tunnelled"]) {
    test(`${name}: echo, the path and query below the URL, close codes both ways`, async () => {
      const ws = await connect(`/endpoint/${name}/room/1?user=ann`);
      ws.send("hello");
      assert.equal(await next(ws), "hello");
      ws.send("where");
      assert.equal(await next(ws), "/room/1?user=ann");
      const big = "x".repeat(MESSAGE_LIMIT);
      ws.send(big);
      assert.equal((await next(ws)).length, MESSAGE_LIMIT, "a message of exactly the limit passes");
      const closed = closeOf(ws);
      ws.close(4100, "client leaves");
      assert.deepEqual(await closed, { code: 4100, reason: "client leaves" });
      const ws2 = await connect(`/endpoint/${name}/latest`);
      ws2.send("seen");
      assert.deepEqual((JSON.parse(await next(ws2)) as { code: number }[]).at(-1), { code: 4100, reason: "client leaves", aborted: true }, "the handler saw the client's code");
      const closed2 = closeOf(ws2);
      ws2.send("bye");
      assert.deepEqual(await closed2, { code: 4001, reason: "handler says bye" });
      if (name === "ws-tunnelled") {
        const [container] = (await client.listContainers({ active: true })).filter((c) => c.stubId === stubs.tunnelled);
        assert.equal(container?.ports["8000"]?.host, "127.0.0.1", "the gateway reached this container through the worker's tunnel");
      }
    });
  }

  test("a message over the workspace's limit closes the socket with 1009 and why", async () => {
    const ws = await connect("/endpoint/ws-direct");
    const closed = closeOf(ws);
    ws.send(Buffer.alloc(MESSAGE_LIMIT + 1));
    const got = await closed;
    assert.equal(got.code, 1009);
    assert.match(got.reason, /message of 65537 bytes exceeds the limit of 65536/);
  });

  test("auth as for HTTP: a token for protected endpoints, none for a public one; a web app upgrades itself", async () => {
    assert.equal((await refusal(`${wsBase}/endpoint/ws-direct`, {})).status, 401);
    assert.equal((await refusal(`${wsBase}/endpoint/ws-direct`, { authorization: "Bearer b9_not-a-token" })).status, 401);
    const pub = await connect(`/public/${stubs.open}`, {});
    pub.send("public");
    assert.equal(await next(pub), "public");
    pub.close();
    const chat = new WebSocket(`${wsBase}/endpoint/ws-chat/lobby`, { headers: auth });
    sockets.push(chat);
    const welcome = next(chat);
    await once(chat, "open");
    assert.equal(await welcome, "welcome to /lobby");
    chat.send("hi");
    assert.equal(await next(chat), "hi");
    chat.close();
  });

  test("bad input: a WebSocket to a JSON endpoint is 400 WEBSOCKET_NOT_SUPPORTED before any upgrade; POST to a realtime endpoint is 409", async () => {
    const refused = await refusal(`${wsBase}/endpoint/ws-json`, auth);
    assert.equal(refused.status, 400);
    const { error } = JSON.parse(refused.body) as { error: { code: string; message: string } };
    assert.equal(error.code, "WEBSOCKET_NOT_SUPPORTED");
    assert.match(error.message, /ws-json does not accept WebSockets: it is a JSON endpoint; declare it with realtime\(\)/);
    const post = await fetch(`${gateway.url}/endpoint/ws-direct`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "{}" });
    assert.equal(post.status, 409);
    assert.match(((await post.json()) as { error: { message: string } }).error.message, /realtime endpoint: connect to its URL with a WebSocket/);
  });

  test("sockets per workspace are bounded: past the limit a socket is closed with 1013 and why", async () => {
    // Sockets of earlier tests are released once both their sides are closed: a refusal while fewer
    // than the limit are held here is one of those still closing, so that socket is tried again.
    const held: WebSocket[] = [];
    while (held.length < SOCKET_LIMIT) {
      const ws = await connect("/endpoint/ws-direct");
      ws.send("ping");
      const answer = await Promise.race([next(ws), closeOf(ws).then((c) => c.code)]);
      if (answer === "ping") held.push(ws);
      else await sleep(100);
    }
    const over = new WebSocket(`${wsBase}/endpoint/ws-direct`, { headers: auth });
    sockets.push(over);
    const got = await closeOf(over);
    assert.equal(got.code, 1013);
    assert.match(got.reason, new RegExp(`this workspace has ${SOCKET_LIMIT} WebSockets open, the most it may have`));
    for (const ws of held) {
      const closed = closeOf(ws);
      ws.close();
      await closed;
    }
  });

  test("an idle socket keeps its container warm past keep-warm (1 s); closing it lets the container go", async () => {
    const ws = await connect("/endpoint/ws-warm");
    const running = async () => (await client.listContainers({ active: true })).filter((c) => c.stubId === stubs.warm);
    const [container] = await running();
    assert.ok(container, "a container serves the socket");
    await sleep(4000); // four keep-warm periods, with the reaper checking every second
    assert.deepEqual((await running()).map((c) => c.id), [container.id], "the same container is still up");
    ws.send("still here");
    assert.equal(await next(ws), "still here");
    ws.close();
    while ((await running()).length > 0) await sleep(200);
  });

  /** A restricted token of the workspace: its id (to revoke it) and its headers. */
  const restricted = async () => {
    const res = await fetch(`${gateway.url}/api/v1/token`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ type: "restricted" }) });
    assert.ok(res.ok, `token: ${res.status}`);
    const token = (await res.json()) as { id: string; key: string };
    return { id: token.id, headers: { authorization: `Bearer ${token.key}` } };
  };
  const revoke = async (id: string) => {
    const res = await fetch(`${gateway.url}/api/v1/token/${id}`, { method: "DELETE", headers: auth });
    assert.ok(res.ok, `revoke: ${res.status}`);
  };

  test("a revoked token's WebSockets close at once (a realtime endpoint); another token's stay open", async () => {
    const token = await restricted();
    const ws = await connect("/endpoint/ws-direct", token.headers);
    const kept = await connect("/endpoint/ws-direct");
    ws.send("before");
    assert.equal(await next(ws), "before");
    const closed = closeOf(ws);
    await revoke(token.id);
    const got = await Promise.race([closed, sleep(5000).then(() => undefined)]);
    assert.ok(got, "the socket closed when its token was revoked");
    kept.send("still");
    assert.equal(await next(kept), "still");
    const keptClosed = closeOf(kept);
    kept.close();
    await keptClosed;
  });

  test("an exposed sandbox port takes WebSockets through the gateway", async () => {
    const sb = await new Sandbox({ image: Image.scratch(), client, cpu: "250m", memory: 256 }).create();
    try {
      // The sandbox's node is the runner's (maybe started through its own loader): its argv up to the script.
      const cmdline = "import { readFileSync } from 'node:fs'; console.log(JSON.stringify(readFileSync('/proc/self/cmdline', 'utf8').split('\\0')))";
      const argv = JSON.parse((await sb.process.runCode(cmdline, { language: "javascript" })).result) as string[];
      const node = argv.slice(0, argv.indexOf("--input-type=module"));
      await sb.fs.writeText("ws-server.mjs", SANDBOX_SERVER);
      const port = 20_000 + Math.floor(Math.random() * 20_000);
      const server = await sb.process.exec(node[0]!, [...node.slice(1), "ws-server.mjs", String(port)]);
      const url = (await sb.exposePort(port)).replace(/^http/, "ws");
      assert.equal((await refusal(url, {})).status, 401, "a port not exposed as public needs the token");
      // The 101's headers as the client gets them: on the API's origin no cookie, and never an extension it did not offer.
      let upgraded: Record<string, unknown> = {};
      const connectPort = async (headers: Record<string, string>) => {
        const ws = new WebSocket(`${wsBase}${new URL(url).pathname}`, { headers, perMessageDeflate: false });
        sockets.push(ws);
        ws.once("upgrade", (res) => (upgraded = res.headers));
        await once(ws, "open");
        return ws;
      };
      let ws: WebSocket | undefined;
      for (let tries = 0; !ws; tries++) {
        if (tries === 300) assert.fail(`the sandbox's server never answered (pid ${server.pid}, argv ${JSON.stringify(node)})`);
        ws = await connectPort(auth).catch(async () => (await sleep(100), undefined));
      }
      assert.equal(upgraded["set-cookie"], undefined, "a port's cookie never reaches the API's origin");
      assert.equal(upgraded["sec-websocket-extensions"], undefined);
      ws.send("ping");
      assert.equal(await next(ws), "sandbox: ping");
      const closed = closeOf(ws);
      ws.close(4300, "done with the sandbox");
      assert.deepEqual(await closed, { code: 4300, reason: "done with the sandbox" });
      // A socket opened with a token that is then revoked closes at once.
      const token = await restricted();
      const byToken = await connectPort(token.headers);
      byToken.send("ping");
      assert.equal(await next(byToken), "sandbox: ping");
      const cut = closeOf(byToken);
      await revoke(token.id);
      assert.ok(await Promise.race([cut, sleep(5000).then(() => undefined)]), "the port's socket closed when its token was revoked");
    } finally {
      await sb.terminate();
    }
  });
});

after(() => rmSync(dir, { recursive: true, force: true }));

test("after the WebSocket tests, the host holds no container, mount, netns or veth of theirs", { skip }, () => {
  const now = captureHostState();
  const ours = (xs: string[]) => xs.filter((x) => x.includes("wsdirect") || x.includes("wstun") || x.includes(dir));
  assert.deepEqual(
    { netns: ours(now.netns), veths: ours(now.veths), mounts: ours(now.overlayMounts), cgroups: ours(now.cgroupDirs) },
    { netns: ours(hostBefore.netns), veths: ours(hostBefore.veths), mounts: ours(hostBefore.overlayMounts), cgroups: ours(hostBefore.cgroupDirs) },
  );
});
