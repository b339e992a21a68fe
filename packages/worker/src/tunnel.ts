/**
 * The worker end of a tunnel (see gateway scheduler/tunnels.ts): on `tunnel.open` the worker dials
 * the container port on its own side, then opens a WebSocket back to the gateway for that stream
 * and pipes bytes both ways. Everything is outbound from the worker, so it works behind NAT.
 * One WebSocket per (gateway, token) carries every stream as a channel (@beta9/protocol
 * tunnel-mux.ts); a gateway that refuses it (an older one) gets one WebSocket per stream.
 */
import { connect, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Duplex } from "node:stream";
import WebSocket, { createWebSocketStream } from "ws";
import { pinnedTlsOptions, spliceTunnel, TUNNEL_MUX_STREAM, TunnelMux, WORKER_TUNNEL_PATH, type HostPortAddress } from "@beta9/protocol";

const DIAL_TIMEOUT_MS = 10_000;
/** After a gateway refused the multiplexed socket, per-stream sockets for this long before asking again. */
const NO_MUX_RETRY_MS = 60_000;
/** The multiplexed socket is pinged this often and dropped after a ping without pong (a silently dead link would swallow every new stream). */
const MUX_PING_MS = 15_000;

export interface TunnelTarget {
  gatewayUrl: string;
  token: string;
  /** The gateway's own certificate (PEM) to trust, when it has one. */
  tlsCa?: string;
  streamId: string;
  /** Where the worker reaches the container port. */
  target: HostPortAddress;
  logger: Logger;
}

function dial(target: HostPortAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${target.host}:${target.port} within ${DIAL_TIMEOUT_MS} ms`));
    }, DIAL_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.pause(); // nothing is read until the gateway's end is there to take it
      resolve(socket);
    });
    // `on`, not `once`: an error after the dial (before the socket is piped) must not go unhandled.
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * The WebSocket back to the gateway, as a stream made at once: the gateway may send the first
 * bytes in the same packet as the upgrade answer, and ws emits them as soon as it opens; a stream
 * made after awaiting "open" would miss them (ws's stream itself waits for "open" to write).
 */
function openStream(url: URL, token: string, tlsCa: string | undefined): Promise<{ ws: WebSocket; stream: Duplex }> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, handshakeTimeout: DIAL_TIMEOUT_MS, ...(tlsCa && pinnedTlsOptions(tlsCa)) });
  const stream = createWebSocketStream(ws);
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      stream.destroy();
      ws.terminate();
      reject(err);
    };
    ws.once("open", () => resolve({ ws, stream }));
    ws.once("unexpected-response", (_req, res) => fail(new Error(`the gateway refused the tunnel (HTTP ${res.statusCode})`)));
    stream.on("error", fail); // every error, not only the first: a second one would crash the worker
  });
}

function tunnelUrl(gatewayUrl: string, streamId: string): URL {
  const url = new URL(`${WORKER_TUNNEL_PATH}/${encodeURIComponent(streamId)}`, gatewayUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

interface Mux {
  mux: TunnelMux;
  nextChannel: number;
}

/** `${gatewayUrl} ${token}` → its multiplexed socket (undefined: the gateway has none, until `retryAt`). */
const muxes = new Map<string, { mux: Promise<Mux | undefined>; retryAt?: number }>();

/** The multiplexed tunnel socket to this gateway, opened on first use and again after it is lost. */
function muxFor(gatewayUrl: string, token: string, tlsCa: string | undefined): Promise<Mux | undefined> {
  const key = `${gatewayUrl} ${token}`;
  const known = muxes.get(key);
  if (known && (known.retryAt === undefined || Date.now() < known.retryAt)) return known.mux;
  const entry: { mux: Promise<Mux | undefined>; retryAt?: number } = { mux: Promise.resolve(undefined) };
  entry.mux = new Promise((resolve, reject) => {
    const ws = new WebSocket(tunnelUrl(gatewayUrl, TUNNEL_MUX_STREAM), {
      headers: { authorization: `Bearer ${token}` }, handshakeTimeout: DIAL_TIMEOUT_MS, perMessageDeflate: false, ...(tlsCa && pinnedTlsOptions(tlsCa)),
      // Masking guards browsers' shared proxies; a zero mask skips the per-byte XOR (still valid framing).
      generateMask: (mask: Buffer) => mask.fill(0),
    });
    const mux = new TunnelMux({ send: (data, done) => (ws.readyState === WebSocket.OPEN ? ws.send(data, { binary: true }, done) : done()) });
    let alive = true;
    const ping = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, MUX_PING_MS).unref();
    ws.on("pong", () => (alive = true));
    ws.once("open", () => resolve({ mux, nextChannel: 1 }));
    ws.once("unexpected-response", (_req, res) => {
      entry.retryAt = Date.now() + NO_MUX_RETRY_MS; // kept (not forgotten on the error below)
      resolve(undefined); // an older gateway: one socket per stream
      res.resume();
      ws.terminate();
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) mux.receive(data as Buffer);
    });
    ws.on("error", (err) => {
      if (muxes.get(key) === entry && entry.retryAt === undefined) muxes.delete(key);
      ws.terminate();
      reject(err);
    });
    ws.on("close", () => {
      clearInterval(ping);
      if (muxes.get(key) === entry && entry.retryAt === undefined) muxes.delete(key);
      mux.close();
    });
  });
  muxes.set(key, entry);
  return entry.mux;
}

/** Opens one tunnel stream; rejects (with a message for `tunnel.failed`) if either end cannot be reached. */
export async function openTunnel({ target, ...rest }: TunnelTarget): Promise<void> {
  await attachTunnel({ ...rest, socket: await dial(target) });
}

/**
 * Carries `socket` (a dialled port, or any duplex such as a shell session's: shell/session.ts) as
 * tunnel stream `streamId`; destroys it and rejects if the gateway cannot be reached.
 */
export async function attachTunnel({ gatewayUrl, token, tlsCa, streamId, socket, logger }: Omit<TunnelTarget, "target"> & { socket: Socket | Duplex }): Promise<void> {
  let muxed: Mux | undefined;
  try {
    muxed = await muxFor(gatewayUrl, token, tlsCa);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  if (muxed) {
    const channel = muxed.nextChannel;
    muxed.nextChannel = channel >= 0xffff_ffff ? 1 : channel + 1;
    muxed.mux.open(channel, streamId);
    // The mux needs only what every Duplex has (pause/resume, write/end, writableLength, events).
    muxed.mux.bind(channel, socket as Socket);
    return;
  }
  let stream: Duplex;
  try {
    ({ stream } = await openStream(tunnelUrl(gatewayUrl, streamId), token, tlsCa));
  } catch (err) {
    socket.destroy();
    throw err;
  }
  spliceTunnel(socket as Socket, stream, {
    onError: (err) => err && logger.debug({ streamId, err: err.message }, "tunnel stream ended with an error"),
  });
}
