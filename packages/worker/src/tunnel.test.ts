/**
 * The worker's tunnel code against a fake gateway: streams share one multiplexed socket when the
 * gateway takes it, and fall back to a WebSocket per stream when it refuses (an older gateway).
 */
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { WebSocketServer, createWebSocketStream, type WebSocket } from "ws";
import { TUNNEL_MUX_STREAM, TunnelMux, WORKER_TUNNEL_PATH } from "@beta9/protocol";
import { openTunnel } from "./tunnel.js";

const logger = pino({ level: "silent" });
let upstream: Server;
let upstreamPort: number;

before(async () => {
  // The "container": answers each line with its upper case.
  upstream = createServer((s) => s.on("data", (d: Buffer) => s.write(String(d).toUpperCase())));
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  upstreamPort = (upstream.address() as AddressInfo).port;
});
after(() => upstream.close());

/** A gateway stand-in: each stream's bytes end up on a socket the test reads and writes. */
async function fakeGateway(acceptMux: boolean) {
  const http: HttpServer = createHttpServer();
  const wss = new WebSocketServer({ noServer: true });
  const streams = new Map<string, (s: Socket | NodeJS.ReadWriteStream) => void>();
  const counts = { mux: 0, perStream: 0, refused: 0 };
  const waiting = new Map<string, Promise<NodeJS.ReadWriteStream>>();
  const expect = (streamId: string) => {
    waiting.set(streamId, new Promise((resolve) => streams.set(streamId, resolve as (s: Socket | NodeJS.ReadWriteStream) => void)));
  };
  http.on("upgrade", (req: IncomingMessage, socket, head) => {
    assert.equal(req.headers.authorization, "Bearer t0ken");
    const id = req.url!.slice(WORKER_TUNNEL_PATH.length + 1);
    if (id === TUNNEL_MUX_STREAM && !acceptMux) {
      counts.refused += 1;
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (id !== TUNNEL_MUX_STREAM) {
        counts.perStream += 1;
        streams.get(id)!(createWebSocketStream(ws));
        return;
      }
      counts.mux += 1;
      const mux: TunnelMux = new TunnelMux({ send: (data, done) => ws.send(data, done) }, (channel, streamId) => {
        // A local socket pair stands for the accepted client connection.
        const front = createServer((accepted) => mux.bind(channel, accepted));
        front.listen(0, "127.0.0.1", () => {
          const client = connect((front.address() as AddressInfo).port, "127.0.0.1");
          client.once("close", () => front.close());
          streams.get(streamId)!(client);
        });
      });
      ws.on("message", (data) => mux.receive(data as Buffer));
      ws.on("close", () => mux.close());
    });
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url, counts, expect,
    stream: (id: string) => waiting.get(id)!,
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      http.close();
    },
  };
}

async function roundTrip(stream: NodeJS.ReadWriteStream, text: string): Promise<string> {
  const answer = new Promise<string>((resolve) => stream.once("data", (d: Buffer) => resolve(String(d))));
  stream.write(text);
  return answer;
}

test("streams share one multiplexed socket to a gateway that takes it", async () => {
  const gw = await fakeGateway(true);
  const target = { host: "127.0.0.1", port: upstreamPort };
  for (const id of ["s1", "s2", "s3"]) gw.expect(id);
  await Promise.all(["s1", "s2", "s3"].map((streamId) => openTunnel({ gatewayUrl: gw.url, token: "t0ken", streamId, target, logger })));
  for (const id of ["s1", "s2", "s3"]) assert.equal(await roundTrip(await gw.stream(id), `hello ${id}`), `HELLO ${id.toUpperCase()}`);
  assert.deepEqual(gw.counts, { mux: 1, perStream: 0, refused: 0 });
  for (const id of ["s1", "s2", "s3"]) (await gw.stream(id) as Socket).destroy();
  gw.close();
});

test("a gateway that refuses the multiplexed socket gets a WebSocket per stream", async () => {
  const gw = await fakeGateway(false);
  const target = { host: "127.0.0.1", port: upstreamPort };
  for (const id of ["p1", "p2"]) gw.expect(id);
  await openTunnel({ gatewayUrl: gw.url, token: "t0ken", streamId: "p1", target, logger });
  await openTunnel({ gatewayUrl: gw.url, token: "t0ken", streamId: "p2", target, logger });
  for (const id of ["p1", "p2"]) assert.equal(await roundTrip(await gw.stream(id), `hi ${id}`), `HI ${id.toUpperCase()}`);
  assert.deepEqual(gw.counts, { mux: 0, perStream: 2, refused: 1 }, "asked once, then per stream");
  for (const id of ["p1", "p2"]) (await gw.stream(id) as unknown as { destroy(): void }).destroy();
  gw.close();
});
