/**
 * The worker end of a tunnel (see gateway scheduler/tunnels.ts): on `tunnel.open` the worker dials
 * the container port on its own side, then opens a WebSocket back to the gateway for that stream
 * and pipes bytes both ways. Everything is outbound from the worker, so it works behind NAT.
 */
import { connect, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Duplex } from "node:stream";
import WebSocket, { createWebSocketStream } from "ws";
import { WORKER_TUNNEL_PATH, type HostPortAddress } from "@beta9/protocol";

const DIAL_TIMEOUT_MS = 10_000;

export interface TunnelTarget {
  gatewayUrl: string;
  token: string;
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
    socket.once("error", (err) => {
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
function openStream(url: URL, token: string): Promise<{ ws: WebSocket; stream: Duplex }> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, handshakeTimeout: DIAL_TIMEOUT_MS });
  const stream = createWebSocketStream(ws);
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      stream.destroy();
      ws.terminate();
      reject(err);
    };
    ws.once("open", () => resolve({ ws, stream }));
    ws.once("unexpected-response", (_req, res) => fail(new Error(`the gateway refused the tunnel (HTTP ${res.statusCode})`)));
    stream.once("error", fail);
  });
}

/** Opens one tunnel stream; rejects (with a message for `tunnel.failed`) if either end cannot be reached. */
export async function openTunnel({ gatewayUrl, token, streamId, target, logger }: TunnelTarget): Promise<void> {
  const socket = await dial(target);
  let stream: Duplex;
  try {
    const url = new URL(`${WORKER_TUNNEL_PATH}/${encodeURIComponent(streamId)}`, gatewayUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    ({ stream } = await openStream(url, token));
  } catch (err) {
    socket.destroy();
    throw err;
  }
  let done = false;
  const abort = (err?: Error) => {
    if (done) return;
    done = true;
    if (err) logger.debug({ streamId, err: err.message }, "tunnel stream ended with an error");
    socket.destroy();
    stream.destroy();
  };
  socket.on("error", abort);
  stream.on("error", abort);
  // Either side closing ends the other with `end`, never `destroy` (which would drop bytes still
  // queued); the pipes already end the other side on a clean EOF, these cover a plain close.
  socket.on("close", () => {
    if (!stream.writableEnded) stream.end();
    setTimeout(() => stream.destroy(), 5000).unref(); // a peer that never acknowledges the close
  });
  stream.on("end", () => setTimeout(() => socket.destroy(), 5000).unref());
  socket.pipe(stream);
  stream.pipe(socket);
  socket.resume();
}
