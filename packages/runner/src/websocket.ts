/**
 * The server side of a WebSocket (RFC 6455) for handlers, with no dependency (the runner has none):
 * the handshake, frames in (masked) and out, fragments, ping/pong and the close handshake.
 *
 * A handler sees a `RealtimeSocket`: an async iterable of messages (text as strings, binary as
 * Uint8Array), `send()` that resolves once the message is handed to the socket with room for
 * more (await it, and a slow reader slows the handler), and `close(code, reason)`. Messages not
 * yet read are held only up to a bound; past it the socket stops reading, so a fast sender is
 * slowed by TCP instead of filling memory. No compression is offered.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Largest message a handler can get (the gateway's per-workspace limit is usually lower). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Unread messages held before the socket stops reading. */
const HIGH_WATER_MESSAGES = 64;
const HIGH_WATER_BYTES = 1024 * 1024;
/** After our close frame, a peer that never answers with its own is cut. */
const CLOSE_TIMEOUT_MS = 5_000;

export type Message = string | Uint8Array;

export interface CloseInfo {
  code: number;
  reason: string;
}

/** Why the request cannot be upgraded, or undefined when it can. */
export function upgradeProblem(req: IncomingMessage): string | undefined {
  if (req.method !== "GET") return "a WebSocket upgrade is a GET";
  if (String(req.headers.upgrade).toLowerCase() !== "websocket") return "the Upgrade header must be websocket";
  if (typeof req.headers["sec-websocket-key"] !== "string") return "Sec-WebSocket-Key is missing";
  if (req.headers["sec-websocket-version"] !== "13") return "only WebSocket version 13 is supported";
  return undefined;
}

function frame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + len);
  out[0] = 0x80 | opcode;
  if (len < 126) out[1] = len;
  else if (len < 65_536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  payload.copy(out, head);
  return out;
}

function closePayload(code: number, reason: string): Buffer {
  if (code === 1005) return Buffer.alloc(0);
  // Cut by characters, so the reason stays valid UTF-8 (a peer must refuse a broken one).
  let cut = reason;
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  const text = Buffer.from(cut, "utf8");
  const out = Buffer.allocUnsafe(2 + text.length);
  out.writeUInt16BE(code, 0);
  text.copy(out, 2);
  return out;
}

/** Close codes an endpoint may send (RFC 6455 section 7.4). */
const validCode = (code: number): boolean => (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);

export class ServerWebSocket implements AsyncIterable<Message> {
  /** The upgrade request as a Fetch Request (path below the endpoint's URL, query, caller's headers). */
  request: Request | undefined;
  /** The subprotocol agreed on (the first the client offered), or "". */
  readonly protocol: string;
  /** Resolves once the socket is closed, with the code and reason of the close (1006: no close frame). */
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentOpcode = 0;
  private queue: Message[] = [];
  private queuedBytes = 0;
  private waiter: ((result: IteratorResult<Message>) => void) | undefined;
  private state: "connecting" | "open" | "closing" | "closed" = "connecting";
  private closeInfo: CloseInfo | undefined;
  private drainWaiters: Array<() => void> = [];
  /** Resolves when the handshake is sent, or the socket ends without one. */
  private readonly opened: Promise<void>;
  private resolveOpened!: () => void;

  constructor(private readonly socket: Duplex, private readonly req: IncomingMessage, private readonly head: Buffer) {
    const offered = req.headers["sec-websocket-protocol"];
    this.protocol = typeof offered === "string" ? (offered.split(",")[0]?.trim() ?? "") : "";
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.opened = new Promise((resolve) => (this.resolveOpened = resolve));
    socket.on("error", () => socket.destroy());
    socket.once("close", () => this.finish(this.closeInfo ?? { code: 1006, reason: "" }));
  }

  /** "connecting" until the handshake is sent, then "open", "closing", "closed". */
  get readyState(): string {
    return this.state;
  }

  /** Sends the 101 answer and starts reading frames. */
  accept(): void {
    if (this.state !== "connecting") return;
    const key = String(this.req.headers["sec-websocket-key"]);
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    this.socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n${this.protocol ? `sec-websocket-protocol: ${this.protocol}\r\n` : ""}\r\n`);
    this.state = "open";
    this.resolveOpened();
    this.socket.on("data", (chunk: Buffer) => this.receive(chunk));
    this.socket.on("drain", () => this.wakeWriters());
    if (this.head.length > 0) this.receive(this.head);
  }

  /**
   * Sends a message (string: text, bytes: binary). Resolves once it is handed to the socket and
   * the socket has room for more. Once the socket is closing or closed the message is dropped, as
   * a browser's WebSocket does: an echo loop that races the peer's close does not fail.
   */
  send(data: Message | ArrayBuffer): Promise<void> {
    // A web app may send before it returns the response that accepts the socket.
    if (this.state === "connecting") return this.opened.then(() => this.send(data));
    if (this.state !== "open") return Promise.resolve();
    const text = typeof data === "string";
    const payload = text ? Buffer.from(data, "utf8") : data instanceof ArrayBuffer ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.socket.write(frame(text ? 1 : 2, payload))) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Starts the close handshake (default 1000, normal closure); the socket ends once the peer answers. */
  close(code = 1000, reason = ""): void {
    if (this.state === "closing" || this.state === "closed") return;
    if (!validCode(code)) throw new RangeError(`close code ${code} is not one a WebSocket may send; use 1000, 1001, 1008, 1011 or 3000-4999`);
    if (this.state === "connecting") {
      this.socket.destroy();
      return;
    }
    this.state = "closing";
    this.closeInfo = { code, reason };
    this.socket.write(frame(8, closePayload(code, reason)));
    setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS).unref();
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: () => {
        const message = this.queue.shift();
        if (message !== undefined) {
          this.queuedBytes -= typeof message === "string" ? message.length : message.byteLength;
          if (this.socket.isPaused() && this.queue.length < HIGH_WATER_MESSAGES / 2) this.socket.resume();
          return Promise.resolve({ value: message, done: false });
        }
        if (this.state === "closed" || this.state === "closing") return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiter = resolve));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }

  private wakeWriters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private deliver(message: Message): void {
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter({ value: message, done: false });
      return;
    }
    this.queue.push(message);
    this.queuedBytes += typeof message === "string" ? message.length : message.byteLength;
    if (this.queue.length >= HIGH_WATER_MESSAGES || this.queuedBytes >= HIGH_WATER_BYTES) this.socket.pause();
  }

  private fail(code: number, reason: string): void {
    this.close(code, reason);
    this.chunks = [];
    this.buffered = 0;
  }

  private receive(chunk: Buffer): void {
    if (this.state === "closed") return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 2) return;
      let buf = this.chunks[0]!;
      if (buf.length < 14 && this.chunks.length > 1) buf = this.flatten();
      const b1 = buf[1]!;
      const len7 = b1 & 0x7f;
      const headLen = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
      if (this.buffered < headLen) return;
      if (buf.length < headLen) buf = this.flatten();
      if ((b1 & 0x80) === 0) return this.fail(1002, "frames from a client must be masked");
      let len = len7;
      if (len7 === 126) len = buf.readUInt16BE(2);
      else if (len7 === 127) len = buf.readUInt32BE(2) >= 0x200000 ? Number.POSITIVE_INFINITY : buf.readUInt32BE(2) * 2 ** 32 + buf.readUInt32BE(6);
      if (len + this.fragmentBytes > MAX_MESSAGE_BYTES) return this.fail(1009, `messages above ${MAX_MESSAGE_BYTES} bytes are refused`);
      // Nothing is copied until the whole frame is here.
      if (this.buffered < headLen + len) return;
      if (buf.length < headLen + len) buf = this.flatten();
      const b0 = buf[0]!;
      const mask = buf.subarray(headLen - 4, headLen);
      const payload = Buffer.from(buf.subarray(headLen, headLen + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      const rest = buf.subarray(headLen + len);
      this.chunks[0] = rest;
      if (rest.length === 0) this.chunks.shift();
      this.buffered -= headLen + len;
      this.onFrame((b0 & 0x80) !== 0, b0 & 0x0f, payload);
      if ((this.state as string) === "closed") return;
    }
  }

  private flatten(): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }

  private onFrame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode === 8) return this.onClose(payload);
    if (opcode === 9) {
      if (this.state === "open") this.socket.write(frame(10, payload));
      return;
    }
    if (opcode === 10) return;
    if (opcode !== 0 && opcode !== 1 && opcode !== 2) return this.fail(1002, `unknown opcode ${opcode}`);
    if (this.state !== "open") return; // after our close frame, data is dropped
    if (opcode !== 0) {
      if (this.fragmentOpcode !== 0) return this.fail(1002, "a new message began inside a fragmented one");
      if (fin) return this.deliver(opcode === 1 ? payload.toString("utf8") : payload);
      this.fragmentOpcode = opcode;
    } else if (this.fragmentOpcode === 0) return this.fail(1002, "a continuation frame without a message");
    this.fragments.push(payload);
    this.fragmentBytes += payload.length;
    if (!fin) return;
    const whole = Buffer.concat(this.fragments);
    const text = this.fragmentOpcode === 1;
    this.fragments = [];
    this.fragmentBytes = 0;
    this.fragmentOpcode = 0;
    this.deliver(text ? whole.toString("utf8") : whole);
  }

  private onClose(payload: Buffer): void {
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    const reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
    if (this.state === "open") {
      // The peer started it: answer with its code (RFC 6455 section 5.5.1), then the connection ends.
      this.state = "closing";
      this.socket.write(frame(8, closePayload(validCode(code) ? code : 1000, validCode(code) ? reason : "")));
    }
    this.closeInfo = { code, reason };
    this.socket.end();
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.({ value: undefined, done: true });
    setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS).unref();
  }

  private finish(info: CloseInfo): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.resolveOpened();
    this.resolveClosed(info);
    this.wakeWriters();
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.({ value: undefined, done: true });
  }
}
