/**
 * Tunnel streams multiplexed over one WebSocket per worker (`${WORKER_TUNNEL_PATH}/${TUNNEL_MUX_STREAM}`),
 * used the same way by the gateway and the worker. One TCP connection per channel; each binary
 * WebSocket message holds one or more frames `[type u8][channel u32][length u32][payload]`. Frames
 * made in one turn of the event loop go out as one message (one write, one read on the other side
 * instead of one per chunk per connection: a loopback write costs far more than the bytes).
 *
 * Backpressure: a receiver whose socket buffers (`write` returns false) sends PAUSE for that
 * channel and RESUME on `drain`; the sender stops reading that socket meanwhile. Bytes queued on the
 * WebSocket itself above HIGH_WATER pause every channel's reads until they fall under LOW_WATER.
 * Cleanup: a socket's EOF is END (the peer ends its socket: bytes already queued are still
 * written), a closed socket is CLOSE (the peer ends its socket and forgets the channel); either way
 * the peer's socket is destroyed 5 s later if it lingers. A lost WebSocket destroys every socket.
 * A peer that keeps sending on a channel it was asked to PAUSE, past MAX_CHANNEL_BUFFER bytes queued
 * on that channel's socket, loses the channel (CLOSE): memory stays bounded whatever the peer does.
 */
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

export const TUNNEL_MUX_STREAM = "mux";

const OPEN = 1;
const DATA = 2;
const END = 3;
const CLOSE = 4;
const PAUSE = 5;
const RESUME = 6;
const HEADER_BYTES = 9;
const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;
/** A batch this large goes at once (the gateway takes messages up to 4 MiB). */
const MAX_BATCH_BYTES = 1 << 20;
const LINGER_MS = 5000;
/** Bytes a channel's socket may hold unwritten after PAUSE was sent; past it the channel is closed. */
export const MAX_CHANNEL_BUFFER = 8 << 20;

interface Channel {
  socket: Socket;
  pausedByPeer: boolean;
  pausedPeer: boolean;
  sentEnd: boolean;
}

export interface TunnelMuxTransport {
  /** Sends one binary message; `done` once it is handed to the socket (or failed). */
  send(data: Buffer, done: (err?: Error) => void): void;
}

export class TunnelMux {
  private readonly channels = new Map<number, Channel>();
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private flushing = false;
  private inFlight = 0;
  private blocked = false;
  private closed = false;

  /** `onOpen`: the peer opened `channel` for `streamId` (the gateway binds or rejects it). */
  constructor(private readonly transport: TunnelMuxTransport, private readonly onOpen?: (channel: number, streamId: string) => void) {}

  get size(): number {
    return this.channels.size;
  }

  /** Tells the peer that `channel` carries `streamId` (the worker, before `bind`). */
  open(channel: number, streamId: string): void {
    this.frame(OPEN, channel, Buffer.from(streamId));
  }

  /** The peer's OPEN cannot be served: it ends its socket. */
  reject(channel: number): void {
    this.frame(CLOSE, channel);
  }

  /** Pipes `socket` (paused or not) over `channel`, both ways. */
  bind(channel: number, socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const ch: Channel = { socket, pausedByPeer: false, pausedPeer: false, sentEnd: false };
    this.channels.set(channel, ch);
    socket.on("data", (chunk: Buffer) => this.frame(DATA, channel, chunk));
    socket.on("end", () => {
      if (ch.sentEnd || this.channels.get(channel) !== ch) return;
      ch.sentEnd = true;
      this.frame(END, channel);
    });
    socket.on("drain", () => {
      if (!ch.pausedPeer || this.channels.get(channel) !== ch) return;
      ch.pausedPeer = false;
      this.frame(RESUME, channel);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      if (this.channels.get(channel) !== ch) return;
      this.channels.delete(channel);
      this.frame(CLOSE, channel);
    });
    if (this.blocked) socket.pause();
    else socket.resume();
  }

  /** One binary message from the peer. */
  receive(data: Buffer): void {
    let at = 0;
    while (at + HEADER_BYTES <= data.length) {
      const type = data[at]!;
      const channel = data.readUInt32BE(at + 1);
      const length = data.readUInt32BE(at + 5);
      const payload = data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length);
      at += HEADER_BYTES + length;
      if (type === OPEN) {
        this.onOpen ? this.onOpen(channel, payload.toString()) : this.reject(channel);
        continue;
      }
      const ch = this.channels.get(channel);
      if (!ch) continue; // already closed here: what was in flight is dropped
      switch (type) {
        case DATA:
          if (ch.pausedPeer && ch.socket.writableLength + payload.length > MAX_CHANNEL_BUFFER) {
            // The peer ignores PAUSE: drop the channel rather than buffer without bound.
            this.channels.delete(channel);
            this.frame(CLOSE, channel);
            ch.socket.destroy();
            break;
          }
          if (!ch.socket.write(payload) && !ch.pausedPeer) {
            ch.pausedPeer = true;
            this.frame(PAUSE, channel);
          }
          break;
        case END:
          this.linger(ch);
          break;
        case CLOSE:
          this.channels.delete(channel);
          this.linger(ch);
          break;
        case PAUSE:
          ch.pausedByPeer = true;
          ch.socket.pause();
          break;
        case RESUME:
          ch.pausedByPeer = false;
          if (!this.blocked) ch.socket.resume();
          break;
      }
    }
  }

  /** The WebSocket is gone: nothing can reach the peer any more. */
  close(): void {
    this.closed = true;
    for (const ch of this.channels.values()) ch.socket.destroy();
    this.channels.clear();
    this.batch = [];
    this.batchBytes = 0;
  }

  private linger(ch: Channel): void {
    ch.socket.end();
    setTimeout(() => ch.socket.destroy(), LINGER_MS).unref();
  }

  private frame(type: number, channel: number, payload?: Buffer): void {
    if (this.closed) return;
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32BE(channel, 1);
    header.writeUInt32BE(payload?.length ?? 0, 5);
    this.batch.push(header);
    this.batchBytes += HEADER_BYTES;
    if (payload?.length) {
      this.batch.push(payload);
      this.batchBytes += payload.length;
    }
    if (this.batchBytes >= MAX_BATCH_BYTES) this.flush();
    else if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => {
        this.flushing = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.closed || this.batchBytes === 0) return;
    const data = Buffer.concat(this.batch, this.batchBytes);
    this.batch = [];
    this.batchBytes = 0;
    this.inFlight += data.length;
    this.transport.send(data, () => {
      this.inFlight -= data.length;
      if (this.blocked && this.inFlight < LOW_WATER) this.unblock();
    });
    if (!this.blocked && this.inFlight > HIGH_WATER) {
      this.blocked = true;
      for (const ch of this.channels.values()) ch.socket.pause();
    }
  }

  private unblock(): void {
    this.blocked = false;
    if (this.closed) return;
    for (const ch of this.channels.values()) if (!ch.pausedByPeer) ch.socket.resume();
  }
}

/**
 * Pipes a TCP socket and a tunnel stream into each other (the per-connection tunnel: one
 * WebSocket stream per socket). An error on either destroys both; a close ends the other side
 * with `end`, never `destroy` (which would drop bytes still queued), and destroys it after 5 s if
 * the peer never acknowledges. `onClose` runs when the socket closes.
 */
export function spliceTunnel(socket: Socket, stream: Duplex, hooks: { onError?: (err?: Error) => void; onClose?: () => void } = {}): void {
  let done = false;
  const abort = (err?: Error) => {
    if (done) return;
    done = true;
    hooks.onError?.(err);
    socket.destroy();
    stream.destroy();
  };
  socket.on("error", abort);
  stream.on("error", abort);
  socket.on("close", () => {
    hooks.onClose?.();
    if (!stream.writableEnded) stream.end();
    setTimeout(() => stream.destroy(), 5000).unref();
  });
  stream.on("end", () => setTimeout(() => socket.destroy(), 5000).unref());
  socket.pipe(stream);
  stream.pipe(socket);
  socket.resume();
}
