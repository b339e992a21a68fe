/**
 * TunnelMux between two in-memory ends: bytes cross intact both ways, a receiver that cannot keep up
 * pauses the sender's socket (nothing piles up in between), EOF and close reach the peer, and a
 * lost link destroys every socket.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TunnelMux } from "./tunnel-mux.js";

/** Two muxes wired to each other (messages delivered on a later turn, like a socket). */
function pair(onOpenB?: (mux: TunnelMux, channel: number, streamId: string) => void) {
  let b!: TunnelMux;
  const a = new TunnelMux({ send: (data, done) => void setImmediate(() => (b.receive(data), done())) });
  b = new TunnelMux({ send: (data, done) => void setImmediate(() => (a.receive(data), done())) }, (channel, streamId) => onOpenB?.(b, channel, streamId));
  return { a, b };
}

/** A server whose accepted sockets are handed to `onSocket`, and a connected (paused) client socket; both half-open capable. */
async function socketPair(onSocket: (s: Socket) => void): Promise<{ server: Server; client: Socket }> {
  const server = createServer({ allowHalfOpen: true }, onSocket);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client = connect({ port: (server.address() as AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
  await new Promise((r) => client.once("connect", r));
  client.pause();
  return { server, client };
}

test("bytes cross both ways, END and CLOSE reach the peer", async () => {
  const body = randomBytes(3 * 1024 * 1024);
  let upstreamGot = createHash("sha256");
  // The "container": reads everything, answers with its hash once the client's side ends.
  const upstream = await socketPair((s) => {
    s.on("data", (d: Buffer) => upstreamGot.update(d));
    s.on("end", () => s.end(upstreamGot.digest("hex")));
  });
  // The "client" side's server end, accepted by the gateway.
  let accepted!: Socket;
  const front = await socketPair((s) => {
    accepted = s;
    s.pause();
  });
  await sleep(10);
  const opened: string[] = [];
  const { a, b } = pair((mux, channel, streamId) => {
    opened.push(streamId);
    mux.bind(channel, accepted);
  });
  a.open(7, "stream-1");
  a.bind(7, upstream.client);
  let answer = "";
  front.client.on("data", (d: Buffer) => (answer += String(d)));
  front.client.resume();
  const closed = new Promise((r) => front.client.once("close", r));
  front.client.end(body);
  await closed;
  assert.deepEqual(opened, ["stream-1"]);
  assert.equal(answer, createHash("sha256").update(body).digest("hex"));
  await sleep(20);
  assert.equal(a.size + b.size, 0, "both ends forgot the channel");
  upstream.server.close();
  front.server.close();
  upstreamGot = createHash("sha256");
});

test("a receiver that cannot keep up pauses the sender's socket; everything arrives once it reads", async () => {
  const total = 24 * 1024 * 1024;
  const body = randomBytes(total);
  // Source: writes the whole body at once (its socket buffers what the tunnel does not take).
  const source = await socketPair((s) => s.end(body));
  // Sink: does not read until told.
  let sinkSocket!: Socket;
  const sinkHash = createHash("sha256");
  let sinkBytes = 0;
  const sink = await socketPair((s) => {
    sinkSocket = s;
    s.pause();
    s.on("data", (d: Buffer) => {
      sinkHash.update(d);
      sinkBytes += d.length;
    });
  });
  await sleep(10);
  const { a, b } = pair();
  b.bind(1, sink.client);
  a.bind(1, source.client);
  await sleep(500);
  // Bounded in between: the sink's client socket holds at most a few MiB queued, the rest waits in the source.
  assert.ok(sink.client.writableLength < 8 * 1024 * 1024, `queued toward the sink: ${sink.client.writableLength}`);
  assert.ok(sinkBytes === 0);
  const done = new Promise((r) => sinkSocket.once("end", r));
  sinkSocket.resume();
  await done;
  assert.equal(sinkBytes, total);
  assert.equal(sinkHash.digest("hex"), createHash("sha256").update(body).digest("hex"));
  source.server.close();
  sink.server.close();
});

test("a lost link destroys every socket of the mux", async () => {
  const one = await socketPair(() => undefined);
  const { a } = pair();
  a.bind(1, one.client);
  const closed = new Promise((r) => one.client.once("close", r));
  a.close();
  await closed;
  assert.equal(one.client.destroyed, true);
  one.server.close();
});

test("a peer that ignores PAUSE loses the channel once MAX_CHANNEL_BUFFER is queued, instead of filling memory", async () => {
  const sink = await socketPair((s) => s.pause()); // never reads
  const sent: Buffer[] = [];
  const b = new TunnelMux({ send: (data, done) => { sent.push(data); done(); } });
  b.bind(1, sink.client);
  const frame = (type: number, channel: number, payload: Buffer) => {
    const header = Buffer.alloc(9);
    header[0] = type;
    header.writeUInt32BE(channel, 1);
    header.writeUInt32BE(payload.length, 5);
    return Buffer.concat([header, payload]);
  };
  const chunk = Buffer.alloc(1 << 20, 1);
  const closed = new Promise((r) => sink.client.once("close", r));
  for (let i = 0; i < 64 && b.size > 0; i++) b.receive(frame(2, 1, chunk)); // DATA, never slowing down
  await closed;
  assert.equal(b.size, 0, "the channel is gone");
  assert.ok(sink.client.destroyed);
  await sleep(10);
  const types = sent.flatMap((m) => { const out: number[] = []; for (let at = 0; at + 9 <= m.length; at += 9 + m.readUInt32BE(at + 5)) out.push(m[at]!); return out; });
  assert.ok(types.includes(5) && types.includes(4), `PAUSE, then CLOSE were sent: ${types.join(",")}`);
  sink.server.close();
});
