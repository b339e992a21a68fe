/**
 * The gateway's WebSocket proxy on real sockets (a `ws` server stands for the container): echo,
 * close codes both ways, messages over the limit closed with 1009 (whole or fragmented), a target
 * that refuses the upgrade, routing errors answered as HTTP, and backpressure: a client that does
 * not read stops the server's sends after a bounded amount, and gets every byte once it reads.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import { WebSocket, WebSocketServer } from "ws";
import { connect as netConnect } from "node:net";
import { acceptKey, FrameMeter } from "./websocket-frames.js";
import { closeStreamsOf } from "./sse.js";
import { proxyWebSocket, routeUpgrades, upgradeOf } from "./websocket.js";

const LIMIT = 64 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("FrameMeter", () => {
  const frame = (opcode: number, fin: boolean, payload: number) => {
    const head = payload < 126 ? [payload] : payload < 65_536 ? [126, payload >> 8, payload & 255] : [127, 0, 0, 0, 0, (payload >>> 24) & 255, (payload >> 16) & 255, (payload >> 8) & 255, payload & 255];
    return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | head[0]!, ...head.slice(1), 1, 2, 3, 4]), Buffer.alloc(payload)]);
  };
  it("passes frames under the limit however they are split, and stops at the header of the first message over it", () => {
    const stream = Buffer.concat([frame(1, true, 10), frame(2, false, 300), frame(9, true, 5), frame(0, true, 700), frame(2, true, 70_000)]);
    const meter = new FrameMeter(1000);
    let passed = 0;
    for (let i = 0; i < stream.length; i++) {
      const { pass, violated } = meter.feed(stream.subarray(i, i + 1));
      passed += pass.length;
      if (violated) break;
    }
    assert.equal(passed, stream.length - frame(2, true, 70_000).length, "everything before the big frame's header passed, nothing of it");
    assert.equal(meter.offending, 70_000);
    assert.ok(meter.atBoundary);
    const fragmented = new FrameMeter(1000);
    assert.equal(fragmented.feed(Buffer.concat([frame(2, false, 600), frame(0, true, 600)])).violated, true, "fragments count as one message");
  });

  it("control frames are bounded: a ping over 125 bytes (64 MiB) or without FIN is a violation, and nothing of it passes", () => {
    for (const bad of [frame(9, true, 126), frame(9, true, 64 * 1024 * 1024), frame(10, true, 70_000), frame(8, true, 200), frame(9, false, 5)]) {
      const meter = new FrameMeter(1 << 30);
      const ok = frame(1, true, 10);
      const { pass, violated } = meter.feed(Buffer.concat([ok, bad.subarray(0, 14)]));
      assert.equal(violated, true);
      assert.equal(pass.length, ok.length, "only the frames before it passed");
      assert.match(meter.problem ?? "", /control frame/);
    }
    assert.equal(new FrameMeter(1000).feed(Buffer.concat([frame(9, true, 125), frame(10, true, 0), frame(8, true, 2)])).violated, false, "125 bytes is allowed");
  });

  it("a new data frame inside a fragmented message, or a continuation outside one, is a violation (the count cannot be reset)", () => {
    // Today's reset: 900 + a new "message" + 900 + ... each under the limit alone, one message of 2,700 bytes in all.
    const resets = new FrameMeter(1000);
    const r = resets.feed(Buffer.concat([frame(2, false, 900), frame(2, false, 900), frame(0, true, 900)]));
    assert.equal(r.violated, true);
    assert.equal(r.pass.length, frame(2, false, 900).length);
    assert.match(resets.problem ?? "", /new data frame inside a fragmented message/);
    const text = new FrameMeter(1000);
    assert.equal(text.feed(Buffer.concat([frame(1, false, 10), frame(9, true, 4), frame(1, true, 10)])).violated, true, "a text frame inside a binary message");
    const stray = new FrameMeter(1000);
    assert.equal(stray.feed(Buffer.concat([frame(1, true, 10), frame(0, true, 10)])).violated, true);
    assert.match(stray.problem ?? "", /continuation frame outside/);
    const fine = new FrameMeter(1000);
    assert.equal(fine.feed(Buffer.concat([frame(1, false, 300), frame(9, true, 1), frame(0, false, 300), frame(0, true, 300), frame(2, true, 999)])).violated, false, "a fragmented message with a ping inside, then another");
    assert.equal(fine.problem, undefined);
  });
});

describe("proxyWebSocket", () => {
  let upstream: Server;
  let wss: WebSocketServer;
  let app: FastifyInstance;
  let base: string;
  const closes: { code: number; reason: string }[] = [];
  let proxied = 0;
  let released = 0;
  let sent = 0;

  before(async () => {
    upstream = createServer((_req, res) => res.end());
    upstream.on("upgrade", (req, socket, head) => {
      if (req.url === "/refuse") return void socket.end("HTTP/1.1 401 Unauthorized\r\ncontent-length: 7\r\nconnection: close\r\n\r\nno, no.");
      // An app whose handshake answers try to act on the gateway's origin (and to negotiate an extension it was not offered).
      const originBound = "set-cookie: sid=1; Domain=example.test; Path=/\r\nSet-Cookie: b=2; path=/; domain=.example.test\r\nset-cookie2: c=3\r\n" +
        "service-worker-allowed: /\r\nclear-site-data: \"*\"\r\nsec-websocket-extensions: permessage-deflate\r\nx-app: kept\r\n";
      if (req.url === "/cookies") {
        socket.on("error", () => undefined);
        return void socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptKey(String(req.headers["sec-websocket-key"]))}\r\n${originBound}\r\n`);
      }
      if (req.url === "/refuse-cookies") return void socket.end(`HTTP/1.1 403 Forbidden\r\n${originBound}content-length: 3\r\nconnection: close\r\n\r\nno.`);
      if (req.url === "/folded") return void socket.end("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nx-a: 1\r\n set-cookie: a=1; Domain=example.test\r\n\r\n");
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
    });
    wss = new WebSocketServer({ noServer: true, maxPayload: 1024 ** 3 });
    wss.on("connection", (ws, req) => {
      ws.on("close", (code, reason) => closes.push({ code, reason: reason.toString() }));
      if (req.url === "/flood") {
        // Sends 64 KiB messages one after another, each once the last is written: a stalled reader stalls it.
        const chunk = Buffer.alloc(32 * 1024, 1);
        const pump = () => {
          if (sent >= 2000 || ws.readyState !== ws.OPEN) return void ws.close(1000, "done");
          sent += 1;
          ws.send(chunk, () => setImmediate(pump));
        };
        pump();
        return;
      }
      ws.on("message", (data, binary) => {
        if (String(data) === "close-me") return ws.close(4200, "server closes");
        ws.send(data, { binary });
      });
    });
    upstream.listen(0, "127.0.0.1");
    await once(upstream, "listening");
    const port = (upstream.address() as { port: number }).port;
    app = Fastify();
    app.get("/ws/*", (request, reply) => {
      const client = upgradeOf(request);
      if (!client) return reply.code(426).send({ error: "upgrade" });
      proxied += 1;
      reply.hijack();
      proxyWebSocket(client, { host: "127.0.0.1", port, path: `/${(request.params as { "*": string })["*"]}`, headers: {} }, { maxMessageBytes: LIMIT, onClose: () => (released += 1) });
    });
    // The port's own origin (cookies kept, host-only), and a socket opened with a token (the test names it).
    app.get("/own/*", (request, reply) => {
      const client = upgradeOf(request)!;
      reply.hijack();
      proxyWebSocket(client, { host: "127.0.0.1", port, path: `/${(request.params as { "*": string })["*"]}`, headers: {} }, { maxMessageBytes: LIMIT, ownOrigin: true });
    });
    app.get("/tok/*", (request, reply) => {
      const client = upgradeOf(request)!;
      reply.hijack();
      proxyWebSocket(client, { host: "127.0.0.1", port, path: `/${(request.params as { "*": string })["*"]}`, headers: {} }, {
        maxMessageBytes: LIMIT, tokenId: String(request.headers["x-test-token"]), onClose: () => (released += 1),
      });
    });
    routeUpgrades(app);
    await app.listen({ port: 0, host: "127.0.0.1" });
    base = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });

  after(async () => {
    await app.close(); // again (the last test closed it): a no-op
    wss.close();
    upstream.close();
  });

  const connect = async (path: string) => {
    const ws = new WebSocket(`${base}${path}`, { perMessageDeflate: false });
    await once(ws, "open");
    return ws;
  };
  const next = (ws: WebSocket) => new Promise<Buffer>((resolve) => ws.once("message", (d) => resolve(d as Buffer)));
  const closeOf = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  const until = async (probe: () => boolean) => {
    while (!probe()) await sleep(10);
  };

  it("echoes, and close codes pass both ways; each socket is released once", async () => {
    const before = released;
    const ws = await connect("/ws/echo");
    ws.send("hello");
    assert.equal(String(await next(ws)), "hello");
    ws.send(Buffer.alloc(LIMIT, 3));
    assert.equal((await next(ws)).length, LIMIT, "a message of exactly the limit passes");
    const closed = closeOf(ws);
    closes.length = 0;
    ws.close(4100, "client closes");
    assert.deepEqual(await closed, { code: 4100, reason: "client closes" });
    await until(() => closes.length === 1);
    assert.deepEqual(closes[0], { code: 4100, reason: "client closes" });
    const ws2 = await connect("/ws/echo");
    const closed2 = closeOf(ws2);
    ws2.send("close-me");
    assert.deepEqual(await closed2, { code: 4200, reason: "server closes" });
    await until(() => released === before + 2);
  });

  it("a message over the limit closes the socket with 1009 on both sides, whole or in fragments", async () => {
    for (const fragmented of [false, true]) {
      const ws = await connect("/ws/echo");
      closes.length = 0;
      const closed = closeOf(ws);
      if (fragmented) {
        ws.send(Buffer.alloc(LIMIT / 2), { fin: false });
        ws.send(Buffer.alloc(LIMIT / 2 + 1), { fin: true });
      } else ws.send(Buffer.alloc(LIMIT + 1));
      const got = await closed;
      assert.equal(got.code, 1009);
      assert.match(got.reason, new RegExp(`message of ${LIMIT + 1} bytes exceeds the limit of ${LIMIT}`));
      await until(() => closes.length === 1);
      assert.equal(closes[0]!.code, 1009, "the container is told too");
    }
  });

  it("a target's refusal reaches the client as it is; unknown routes and plain GETs are HTTP errors", async () => {
    const status = (path: string) => new Promise<number>((resolve) => {
      const ws = new WebSocket(`${base}${path}`);
      ws.on("unexpected-response", (_req, res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
      });
      ws.on("error", () => undefined);
    });
    assert.equal(await status("/ws/refuse"), 401);
    assert.equal(await status("/nowhere"), 404);
  });

  /** The head a raw client gets for an upgrade to `path`. */
  const rawHead = (path: string) => new Promise<string>((resolve, reject) => {
    const socket = netConnect({ host: "127.0.0.1", port: Number(new URL(base).port) });
    let got = "";
    socket.on("error", reject);
    socket.on("data", (d) => {
      got += d.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      if (end === -1) return;
      socket.destroy();
      resolve(got.slice(0, end + 4));
    });
    socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n`);
  });

  it("the target's handshake answer loses what acts on the API's origin (cookies, service worker, Clear-Site-Data) and any extension, 101 or refusal", async () => {
    for (const path of ["/ws/cookies", "/ws/refuse-cookies"]) {
      const head = await rawHead(path);
      assert.match(head, path.endsWith("refuse-cookies") ? /^HTTP\/1\.1 403 / : /^HTTP\/1\.1 101 /, path);
      assert.match(head, /\r\nx-app: kept\r\n/, path);
      assert.doesNotMatch(head, /set-cookie|service-worker-allowed|clear-site-data|sec-websocket-extensions/i, `${path}: ${head}`);
    }
    const ws = new WebSocket(`${base}/ws/cookies`, { perMessageDeflate: false });
    const opened = once(ws, "open");
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.once("upgrade", (res) => resolve(res.headers));
      ws.once("error", reject);
    });
    assert.equal(headers["set-cookie"], undefined);
    await opened;
    ws.terminate();
  });

  it("on a port's own origin the target's cookies pass, host-only; extensions still never do", async () => {
    const head = await rawHead("/own/cookies");
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.match(head, /\r\nset-cookie: sid=1; Path=\/\r\n/);
    assert.match(head, /\r\nSet-Cookie: b=2; path=\/\r\n/);
    assert.doesNotMatch(head, /domain=/i);
    assert.doesNotMatch(head, /sec-websocket-extensions/i);
  });

  it("a handshake answer with folded header lines is not relayed: the client gets a 502", async () => {
    assert.match(await rawHead("/ws/folded"), /^HTTP\/1\.1 502 /);
  });

  it("revoking the token a socket was opened with cuts it, both sides, and releases it once", async () => {
    const ws = new WebSocket(`${base}/tok/echo`, { perMessageDeflate: false, headers: { "x-test-token": "tok-revoked" } });
    await once(ws, "open");
    const other = new WebSocket(`${base}/tok/echo`, { perMessageDeflate: false, headers: { "x-test-token": "tok-kept" } });
    await once(other, "open");
    ws.send("hi");
    assert.equal(String(await next(ws)), "hi");
    const before = released;
    closes.length = 0;
    const closed = closeOf(ws);
    closeStreamsOf("tok-revoked");
    assert.equal((await closed).code, 1006, "cut, not closed politely");
    await until(() => closes.length === 1 && released === before + 1);
    other.send("still here");
    assert.equal(String(await next(other)), "still here", "another token's socket is untouched");
    const closedOther = closeOf(other);
    other.close(1000);
    await closedOther;
  });

  it("backpressure: a client that does not read stops the server's sends; reading on gets every byte", async () => {
    const ws = new WebSocket(`${base}/ws/flood`, { perMessageDeflate: false });
    let bytes = 0;
    ws.on("message", (d) => (bytes += (d as Buffer).length));
    await once(ws, "open");
    ws.pause();
    let last = -1;
    let same = 0;
    while (same < 5) {
      same = sent === last ? same + 1 : 0;
      last = sent;
      await sleep(100);
    }
    process.stdout.write(`# flood: the server stalled after ${sent} of 2000 messages of 32 KiB\n`);
    assert.ok(sent < 2000, "the server was stopped by the client that does not read");
    const closed = closeOf(ws);
    ws.resume();
    assert.equal((await closed).code, 1000);
    assert.equal(bytes, 2000 * 32 * 1024);
  });

  it("counts each proxied socket, and closing the app cuts the sockets still open", async () => {
    assert.ok(proxied >= 6);
    const ws = await connect("/ws/echo");
    const closed = closeOf(ws);
    await app.close();
    assert.equal((await closed).code, 1006, "the connection was cut, and the app closed without waiting for it");
  });
});
