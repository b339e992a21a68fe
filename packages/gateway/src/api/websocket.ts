/**
 * WebSocket upgrades through the gateway. An upgrade request goes through Fastify's routing like
 * any request (`routeUpgrades`): the same auth hook, the same workspace checks, the same 4xx
 * answers before anything is upgraded. A route that serves WebSockets takes the raw socket from
 * `upgradeOf(request)` and hands it to `proxyWebSocket`, which dials the container (or a tunnel's
 * loopback listener: a machine's sockets then cross the tunnel mux with its flow control), asks
 * it to upgrade, and relays bytes both ways untouched. Only frame headers are read on the way
 * (websocket-frames.ts), to bound message sizes; close frames and their codes pass as they are.
 * Backpressure is TCP's: a side that does not read stops the other side's reads, nothing is held.
 *
 * `proxyWebSocket` knows nothing of stubs: endpoints and web apps (websocket-routes.ts), exposed
 * sandbox ports and pods call it with their container's address.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ServerResponse, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { Duplex } from "node:stream";
import { Beta9Error } from "@beta9/protocol";
import { acceptKey, closeFrame, FrameMeter } from "./websocket-frames.js";
import { closeOnRevoke } from "./sse.js";
import { hostOnlyCookie, ORIGIN_BOUND_RESPONSE } from "../sandboxes/proxy.js";
import { answerAndClose, answerError, claimUpgrade, guardUpgrades } from "../upgrades.js";

const UPGRADE = Symbol("beta9.upgrade");
/** The target's answer to the upgrade must fit this (status line and headers). */
const MAX_HANDSHAKE_BYTES = 16 * 1024;
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** After the proxy ended both sides, a peer that never closes its end is cut. */
const CLOSE_GRACE_MS = 5_000;

/** Close codes (RFC 6455 section 7.4.1). */
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_MESSAGE_TOO_BIG = 1009;
export const CLOSE_TRY_AGAIN_LATER = 1013;

/** The raw side of an upgrade request, once Fastify routed it. */
export interface UpgradedClient {
  socket: Duplex;
  head: Buffer;
  headers: IncomingHttpHeaders;
}

type RawWithUpgrade = IncomingMessage & { [UPGRADE]?: { socket: Duplex; head: Buffer } };

/** The client's socket when `request` is a WebSocket upgrade (GET with `Upgrade: websocket`), else undefined. */
export function upgradeOf(request: FastifyRequest): UpgradedClient | undefined {
  const raw = request.raw as RawWithUpgrade;
  const up = raw[UPGRADE];
  return up && { socket: up.socket, head: up.head, headers: raw.headers };
}

/** Whether the request asks for a WebSocket (for routes that refuse one with a clear error). */
export const isWebSocketUpgrade = (request: FastifyRequest): boolean => (request.raw as RawWithUpgrade)[UPGRADE] !== undefined;

/**
 * Routes every upgrade the server gets that is the API's (upgrades.ts decides, from the one
 * normalized path; the worker protocol's own sockets are worker-socket.ts's) through the app.
 * Whatever a route answers without taking the socket (an auth error, a 404) is written to it as a
 * plain HTTP response, then the connection is closed. Closing the app cuts the sockets still open
 * (the server would otherwise wait for them, since upgraded sockets stay its connections).
 */
export function routeUpgrades(app: FastifyInstance): void {
  const live = new Set<Duplex>();
  app.addHook("preClose", (done) => {
    for (const socket of live) socket.destroy();
    done();
  });
  guardUpgrades(app.server);
  app.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (claimUpgrade(req, "api") === undefined) return;
    live.add(socket);
    socket.once("close", () => live.delete(socket));
    socket.on("error", () => socket.destroy());
    if (req.method !== "GET" || String(req.headers.upgrade).toLowerCase() !== "websocket") {
      return void writeError(socket, new Beta9Error("BAD_REQUEST", { reason: "only GET with Upgrade: websocket is upgraded here" }));
    }
    (req as RawWithUpgrade)[UPGRADE] = { socket, head };
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    // An answer that did not take the socket ends the connection: closed once flushed, read or not.
    res.once("finish", () => answerAndClose(socket));
    try {
      app.routing(req, res);
    } catch (err) {
      app.log.warn({ err }, "websocket upgrade routing failed");
      socket.destroy();
    }
  });
}

/** A JSON error answer on a socket nothing was written to yet (used once a route took the socket); the socket is closed after it. */
export function writeError(socket: Duplex, err: Beta9Error): void {
  answerError(socket, err);
}

/**
 * Completes the client's handshake only to close the socket at once with `code` and `reason`
 * (1013 when the workspace has all the sockets it may have): browsers see a close code, not an
 * opaque failed handshake.
 */
export function refuseWebSocket(client: UpgradedClient, code: number, reason: string): void {
  const key = client.headers["sec-websocket-key"];
  if (typeof key !== "string") return writeError(client.socket, new Beta9Error("BAD_REQUEST", { reason: "a WebSocket upgrade needs Sec-WebSocket-Key" }));
  client.socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptKey(key)}\r\n\r\n`);
  client.socket.end(closeFrame(code, reason, false));
  setTimeout(() => client.socket.destroy(), CLOSE_GRACE_MS).unref();
}

/** Where the upgrade goes: an address (a container port, or a tunnel's loopback listener) and the request to send it. */
export interface UpgradeTarget {
  host: string;
  port: number;
  /** Path and query on the target. */
  path: string;
  /** Headers for the target besides the WebSocket ones (forwarded ones, the target's own auth). */
  headers: Record<string, string>;
  /** Dial it with TLS (another gateway that serves https), its certificate checked against `ca` (default: the system's CAs). */
  tls?: { ca?: string[] };
}

export interface ProxyOptions {
  /** A message (all its fragments) above this ends the socket with 1009, either way. */
  maxMessageBytes: number;
  /** Called once, when both sides are closed, however it went (release the slot, the count). */
  onClose?: () => void;
  handshakeTimeoutMs?: number;
  /**
   * The socket is served on the target's own origin (an exposed port's BETA9_SANDBOX_HOST form):
   * its cookies pass, host-only. Otherwise (the API's origin) the target's answer loses the headers
   * that would act on that origin (cookies, service worker scope, Clear-Site-Data), as HTTP answers do.
   */
  ownOrigin?: boolean;
  /** The token that opened the socket: its revocation cuts both sides at once. */
  tokenId?: string;
}

/** Headers the proxy sets itself on the target's request, never copied from the caller. */
const OWN = new Set(["host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions", "content-length", "transfer-encoding"]);
const SAFE_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function requestHead(client: UpgradedClient, target: UpgradeTarget): string {
  const lines = [`GET ${target.path} HTTP/1.1`, `host: ${target.host}:${target.port}`, "connection: Upgrade", "upgrade: websocket"];
  const key = client.headers["sec-websocket-key"];
  lines.push(`sec-websocket-key: ${String(key)}`, `sec-websocket-version: ${String(client.headers["sec-websocket-version"] ?? "13")}`);
  const protocol = client.headers["sec-websocket-protocol"];
  if (typeof protocol === "string") lines.push(`sec-websocket-protocol: ${protocol}`);
  // No Sec-WebSocket-Extensions: with permessage-deflate a frame's length would not be its message's size.
  for (const [name, value] of Object.entries(target.headers)) {
    if (OWN.has(name.toLowerCase()) || !SAFE_VALUE.test(value) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) continue;
    lines.push(`${name}: ${value}`);
  }
  return `${lines.join("\r\n")}\r\n\r\n`;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The target's answer to the upgrade (status line and headers, up to the blank line) as the client
 * gets it, under the rules the HTTP relay applies (sandboxes/proxy.ts `relayAll`): on the API's
 * origin no header that acts on the origin; on a port's own origin cookies host-only. Never
 * Sec-WebSocket-Extensions: the gateway offers none, and a frame's length must be its message's
 * size for the meter. Undefined for a head that is not plain HTTP/1.1 header lines (folded lines,
 * bare CR or LF, names that are no tokens): such an answer is not relayed at all.
 */
export function relayedHandshakeHead(head: Buffer, o: { ownOrigin?: boolean } = {}): Buffer | undefined {
  const text = head.toString("latin1");
  if (!text.endsWith("\r\n\r\n")) return undefined;
  const lines = text.slice(0, -4).split("\r\n");
  const out = [lines[0]!];
  if (!/^HTTP\/1\.[01] \d{3}(?: [^\r\n\0]*)?$/.test(out[0]!)) return undefined;
  for (const line of lines.slice(1)) {
    if (/[\r\n\0]/.test(line)) return undefined;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) return undefined; // folded lines (leading space) and junk included
    const lower = name.toLowerCase();
    if (lower === "sec-websocket-extensions") continue;
    if (o.ownOrigin) {
      out.push(lower === "set-cookie" ? `${name}:${hostOnlyCookie(line.slice(colon + 1))}` : line);
      continue;
    }
    if (ORIGIN_BOUND_RESPONSE.has(lower)) continue;
    out.push(line);
  }
  return Buffer.from(`${out.join("\r\n")}\r\n\r\n`, "latin1");
}

/**
 * Upgrades `client` through to `target` and relays the socket until either side ends it. A target
 * that answers anything but 101 has that answer passed to the client (an app's own 401 or
 * 404), its headers under the HTTP relay's rules (`relayedHandshakeHead`). Never throws:
 * failures reach the client as an HTTP error or a closed socket.
 */
export function proxyWebSocket(client: UpgradedClient, target: UpgradeTarget, options: ProxyOptions): void {
  const { socket } = client;
  let closedCount = 0;
  let finished = false;
  const closedOne = () => {
    closedCount += 1;
    if (closedCount === 2 && !finished) {
      finished = true;
      unregister();
      options.onClose?.();
    }
  };
  if (typeof client.headers["sec-websocket-key"] !== "string") {
    writeError(socket, new Beta9Error("BAD_REQUEST", { reason: "a WebSocket upgrade needs Sec-WebSocket-Key" }));
    finished = true;
    options.onClose?.();
    return;
  }
  const upstream = target.tls
    ? tlsConnect({ host: target.host, port: target.port, ...(target.tls.ca && { ca: target.tls.ca }), ...(isIP(target.host) === 0 && { servername: target.host }) }).setNoDelay(true)
    : connect({ host: target.host, port: target.port, noDelay: true });
  // A revoked token's sockets end at once (as its event streams and shells do).
  const unregister = options.tokenId === undefined ? () => undefined : closeOnRevoke(options.tokenId, () => {
    socket.destroy();
    upstream.destroy();
  });
  socket.once("close", closedOne);
  upstream.once("close", closedOne);
  socket.on("error", () => upstream.destroy());
  let upgraded = false;
  const timer = setTimeout(() => fail("the container did not answer the upgrade in time"), options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
  timer.unref();
  function fail(reason: string): void {
    clearTimeout(timer);
    upstream.destroy();
    if (!upgraded && socket.writable) writeError(socket, new Beta9Error("UPSTREAM_FAILED", { reason }));
    else socket.destroy();
  }
  upstream.on("error", (err) => (upgraded ? socket.destroy() : fail(err.message)));
  // The client left while the handshake was under way.
  const leftEarly = () => upstream.destroy();
  socket.once("close", leftEarly);
  upstream.write(requestHead(client, target));

  let buffered = Buffer.alloc(0);
  const onHandshake = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf("\r\n\r\n");
    if (end === -1) {
      if (buffered.length > MAX_HANDSHAKE_BYTES) fail(`the container's answer to the upgrade exceeds ${MAX_HANDSHAKE_BYTES} bytes of headers`);
      return;
    }
    upstream.off("data", onHandshake);
    clearTimeout(timer);
    const head = buffered.subarray(0, end + 4);
    const rest = buffered.subarray(end + 4);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.toString("latin1", 0, 16))?.[1];
    const relayed = relayedHandshakeHead(head, { ownOrigin: options.ownOrigin === true });
    if (!relayed) return fail("the container's answer to the upgrade is not well-formed HTTP");
    socket.write(relayed);
    if (status !== "101") {
      // The app's own refusal goes to the client (its headers filtered); the connection ends with it.
      if (rest.length > 0) socket.write(rest);
      upstream.pipe(socket);
      // Closed once the answer is through, whether or not the client ever closes its side.
      upstream.once("close", () => answerAndClose(socket));
      setTimeout(() => upstream.destroy(), HANDSHAKE_TIMEOUT_MS).unref();
      return;
    }
    upgraded = true;
    socket.off("close", leftEarly);
    splice(socket, upstream, client.head, rest, options.maxMessageBytes);
  };
  upstream.on("data", onHandshake);
}

/**
 * Relays frames both ways, each direction through its own meter. A message over the limit ends
 * the socket: 1009 with a reason to both sides (to a side whose incoming frame is cut midway, a
 * reset instead, since a close frame there would land inside it). Framing the meter cannot count
 * (an oversized or fragmented control frame, a message started inside another) ends it the same
 * way with 1002.
 */
function splice(client: Duplex, upstream: Socket, clientHead: Buffer, upstreamRest: Buffer, maxMessageBytes: number): void {
  const toUpstream = new FrameMeter(maxMessageBytes);
  const toClient = new FrameMeter(maxMessageBytes);
  let over = false;
  const cutAfterGrace = () => setTimeout(() => {
    client.destroy();
    upstream.destroy();
  }, CLOSE_GRACE_MS).unref();

  const violation = (meter: FrameMeter) => {
    if (over) return;
    over = true;
    const reason = meter.problem ?? `message of ${Number.isFinite(meter.offending) ? meter.offending : "too many"} bytes exceeds the limit of ${maxMessageBytes}`;
    const code = meter.problem === undefined ? CLOSE_MESSAGE_TOO_BIG : CLOSE_PROTOCOL_ERROR;
    const fromClient = meter === toUpstream;
    // The side that sent the big message gets its close frame right after the last whole frame it sent.
    if (fromClient || toUpstream.atBoundary) upstream.end(closeFrame(code, reason, true));
    else upstream.destroy();
    if (!fromClient || toClient.atBoundary) client.end(closeFrame(code, reason, false));
    else client.destroy();
    cutAfterGrace();
  };

  const relay = (src: Duplex, dst: Duplex, meter: FrameMeter) => {
    let paused = false;
    const onDrain = () => {
      paused = false;
      src.resume();
    };
    const push = (chunk: Buffer) => {
      if (over || dst.writableEnded) return;
      const { pass, violated } = meter.feed(chunk);
      if (pass.length > 0 && !dst.write(pass) && !paused) {
        paused = true;
        src.pause();
        dst.once("drain", onDrain);
      }
      if (violated) violation(meter);
    };
    src.on("data", push);
    src.once("end", () => {
      if (!dst.writableEnded) dst.end();
      cutAfterGrace();
    });
    return push;
  };
  relay(client, upstream, toUpstream)(clientHead);
  relay(upstream, client, toClient)(upstreamRest);
  client.once("close", () => upstream.end());
  upstream.once("close", () => client.end());
  upstream.on("error", () => client.destroy());
}
