import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { GatewayRotation, parseGatewayUrls, watchLiveness, watchPrimary } from "./gateway-list.js";

test("gateway URLs: one, a comma list or an array; duplicates once; bad ones refused naming them", () => {
  assert.deepEqual(parseGatewayUrls("http://a:1994"), ["http://a:1994"]);
  assert.deepEqual(parseGatewayUrls(" http://a:1994, http://b:1994/ ,http://a:1994"), ["http://a:1994", "http://b:1994"]);
  assert.throws(() => parseGatewayUrls("https://a:1994,http://b:1994"), /mix http:\/\/ and https:\/\/.*in clear/);
  assert.deepEqual(parseGatewayUrls(["http://a:1", "http://b:2"]), ["http://a:1", "http://b:2"]);
  assert.throws(() => parseGatewayUrls(" , "), /no gateway URL/);
  assert.throws(() => parseGatewayUrls("http://a:1,a-host:1994"), /"a-host:1994" is not a URL|must start with http/);
  assert.throws(() => parseGatewayUrls("ftp://a"), /must start with http/);
});

test("rotation: a failed gateway is left for the next one at the minimum wait; backoff grows per full round", () => {
  const r = new GatewayRotation(["A", "B", "C"], 100, 1000);
  const half = () => 1; // no jitter: the upper end
  assert.equal(r.current, "A");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "B");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "C");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "A");
  assert.equal(r.failed(half), 200, "the second round waits twice as long");
  for (let i = 0; i < 20; i++) r.failed(half);
  assert.equal(r.failed(half), 1000, "capped");
  r.connected();
  assert.equal(r.attempts, 0);
  assert.equal(r.failed(half), 100, "a welcome resets the backoff");
});

test("rotation with one URL: the old exponential backoff on the same gateway", () => {
  const r = new GatewayRotation(["A"], 250, 30_000);
  assert.deepEqual([1, 2, 3, 4].map(() => r.failed(() => 1)), [250, 500, 1000, 2000]);
  assert.equal(r.current, "A");
  assert.ok(r.failed(() => 0) >= 2000, "jitter keeps at least half");
});

/** A WebSocket server on loopback; `autoPong: false` plays a gateway whose host went silent. */
async function wsServer(autoPong: boolean): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer();
  const wss = new WebSocketServer({ server, autoPong });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise((resolve) => wss.close(resolve));
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("liveness: a connection whose gateway stops answering pings is terminated; one that answers stays", async () => {
  const silent = await wsServer(false);
  const answering = await wsServer(true);
  try {
    const [dead, live] = [new WebSocket(silent.url), new WebSocket(answering.url)];
    await Promise.all([once(dead, "open"), once(live, "open")]);
    const stops = [watchLiveness(dead, 100), watchLiveness(live, 100)];
    const t0 = Date.now();
    await once(dead, "close");
    const ms = Date.now() - t0;
    assert.ok(ms >= 300, `not before three silent intervals (${ms} ms)`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(live.readyState, WebSocket.OPEN, "pongs keep it");
    stops.forEach((stop) => stop());
    live.close();
  } finally {
    await Promise.all([silent.close(), answering.close()]);
  }
});

test("the first gateway's return: back() is called once its health answers 200, not while it fails", async () => {
  let status = 503;
  let asked = 0;
  const server = createServer((req, res) => {
    asked += req.url === "/api/v1/health" ? 1 : 0;
    res.writeHead(status).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let back = 0;
  const stop = watchPrimary(url, undefined, 50, () => (back += 1));
  try {
    while (asked < 3) await new Promise((r) => setTimeout(r, 20));
    assert.equal(back, 0, "a failing health check keeps the worker where it is");
    status = 200;
    while (back === 0) await new Promise((r) => setTimeout(r, 20));
    stop();
    const after = back;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(back, after, "nothing after stop()");
  } finally {
    stop();
    await new Promise((resolve) => server.close(resolve));
  }
});
