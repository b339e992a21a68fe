/**
 * Tunnels: how the gateway reaches container ports on a worker it cannot dial (behind NAT, no
 * inbound port). For each (container, port) of such a worker the gateway listens on a loopback
 * port and reports that address as the container's, so endpoint, task and sandbox traffic work
 * unchanged. Each accepted TCP connection asks the worker (`tunnel.open` on its control socket) to
 * dial the container port locally and open a WebSocket back to the gateway
 * (`/api/v1/worker/tunnel/:streamId`); the bytes then flow as binary frames, with backpressure
 * both ways (stream pipes over `createWebSocketStream`). Current workers instead keep one
 * WebSocket (`/api/v1/worker/tunnel/mux`) that carries all their streams as channels
 * (@beta9/protocol tunnel-mux.ts): no handshake per connection, and one write for the chunks of
 * many connections; the per-stream socket stays for older workers.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Duplex } from "node:stream";
import { createWebSocketStream, type WebSocket } from "ws";
import { spliceTunnel, TUNNEL_MUX_STREAM, TunnelMux, type GatewayMessage, type HostPortAddress } from "@beta9/protocol";

/** How long an accepted connection waits for the worker's tunnel socket. */
const OPEN_TIMEOUT_MS = 10_000;


interface Listener {
  workerId: string;
  containerId: string;
  server: Server;
  address: HostPortAddress;
}

interface Pending {
  workerId: string;
  containerId: string;
  tokenId: string;
  socket: Socket;
  timer: NodeJS.Timeout;
  /** Hears why the stream never came (the worker's `tunnel.failed` message, a timeout). */
  onFail?: (message: string) => void;
}

export interface TunnelWorker {
  /** The token the worker's control socket authenticated with: its tunnel sockets must use the same. */
  tokenId: string;
  send(message: GatewayMessage): void;
}

export class TunnelHub {
  /** `${containerId}:${port}` → listener. */
  private readonly listeners = new Map<string, Listener>();
  private readonly pending = new Map<string, Pending>();
  private readonly workers = new Map<string, TunnelWorker>();
  /** Tunnelled connections by outcome (tests use them to prove traffic went through a tunnel). */
  readonly stats = { opened: 0, failed: 0, noWorker: 0 };
  /** Streams piped now → their container, so a lost container or closing gateway can cut them. */
  private readonly live = new Map<Socket, string>();

  constructor(private readonly logger?: Logger, private readonly openTimeoutMs = OPEN_TIMEOUT_MS) {}

  /** The worker's current control connection (after each hello). */
  setWorker(workerId: string, worker: TunnelWorker): void {
    this.workers.set(workerId, worker);
  }

  /** That connection closed; a newer connection of the same worker stays. */
  clearWorker(workerId: string, worker: TunnelWorker): void {
    if (this.workers.get(workerId) === worker) this.workers.delete(workerId);
  }

  /** Replaces each reported port by a loopback listener that tunnels to it (same listener on repeats). */
  async expose(workerId: string, containerId: string, ports: Record<string, HostPortAddress>): Promise<Record<string, HostPortAddress>> {
    const out: Record<string, HostPortAddress> = {};
    for (const port of Object.keys(ports)) {
      const key = `${containerId}:${port}`;
      let listener = this.listeners.get(key);
      if (!listener || listener.workerId !== workerId) {
        listener?.server.close();
        listener = await this.listen(workerId, containerId, Number(port));
        this.listeners.set(key, listener);
      }
      out[port] = listener.address;
    }
    return out;
  }

  /**
   * The container exited or was lost: its listeners go, and so do its open streams (after a lost
   * link nothing would ever end them, and a caller waiting on one must fail so it can retry).
   */
  release(containerId: string): void {
    for (const [socket, id] of this.live) if (id === containerId) socket.destroy();
    for (const [key, listener] of this.listeners) {
      if (listener.containerId !== containerId) continue;
      listener.server.close();
      this.listeners.delete(key);
    }
  }

  /** The worker is gone for good: every listener and pending connection of it goes. */
  releaseWorker(workerId: string): void {
    this.workers.delete(workerId);
    for (const listener of [...this.listeners.values()]) if (listener.workerId === workerId) this.release(listener.containerId);
    for (const [streamId, p] of this.pending) if (p.workerId === workerId) this.fail(streamId, "the worker went away");
  }

  /** Whether a tunnel socket for this stream (or a multiplexed one) may be accepted from this token. */
  expects(streamId: string, tokenId: string): boolean {
    if (streamId === TUNNEL_MUX_STREAM) return [...this.workers.values()].some((w) => w.tokenId === tokenId);
    return this.pending.get(streamId)?.tokenId === tokenId;
  }

  /** The worker's tunnel socket for `streamId` arrived: pipe it to the accepted connection. */
  attach(streamId: string, ws: WebSocket, tokenId?: string): void {
    if (streamId === TUNNEL_MUX_STREAM && tokenId !== undefined) return this.attachMux(ws, tokenId);
    const p = this.pending.get(streamId);
    if (!p) {
      ws.close(4004, "unknown or expired stream");
      return;
    }
    this.pending.delete(streamId);
    clearTimeout(p.timer);
    this.stats.opened += 1;
    const socket = p.socket;
    const stream = createWebSocketStream(ws);
    this.live.set(socket, p.containerId);
    spliceTunnel(socket, stream, { onClose: () => this.live.delete(socket) });
  }

  /**
   * A worker's multiplexed tunnel socket: each OPEN names a pending stream of a worker with the same
   * token, whose accepted connection is then bound to that channel.
   */
  private attachMux(ws: WebSocket, tokenId: string): void {
    const mux: TunnelMux = new TunnelMux(
      { send: (data, done) => (ws.readyState === ws.OPEN ? ws.send(data, { binary: true }, done) : done()) },
      (channel, streamId) => {
        const p = this.pending.get(streamId);
        if (!p || p.tokenId !== tokenId) return mux.reject(channel);
        this.pending.delete(streamId);
        clearTimeout(p.timer);
        this.stats.opened += 1;
        const socket = p.socket;
        this.live.set(socket, p.containerId);
        socket.once("close", () => this.live.delete(socket));
        mux.bind(channel, socket);
      },
    );
    ws.on("message", (data, isBinary) => {
      if (isBinary) mux.receive(data as Buffer);
    });
    ws.on("error", () => ws.terminate());
    ws.on("close", () => mux.close());
  }

  /** The worker could not dial the container port. */
  fail(streamId: string, message: string): void {
    const p = this.pending.get(streamId);
    if (!p) return;
    this.pending.delete(streamId);
    clearTimeout(p.timer);
    this.stats.failed += 1;
    this.logger?.debug({ streamId, workerId: p.workerId, message }, "tunnel failed");
    p.onFail?.(message);
    p.socket.destroy();
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  close(): void {
    for (const listener of this.listeners.values()) listener.server.close();
    this.listeners.clear();
    for (const streamId of [...this.pending.keys()]) this.fail(streamId, "gateway shutting down");
    for (const socket of this.live.keys()) socket.destroy();
  }

  private listen(workerId: string, containerId: string, port: number): Promise<Listener> {
    const server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.accepted(workerId, containerId, port, socket));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        const address = server.address();
        if (typeof address !== "object" || address === null) return reject(new Error("tunnel listener has no address"));
        resolve({ workerId, containerId, server, address: { host: "127.0.0.1", port: address.port } });
      });
    });
  }

  private accepted(workerId: string, containerId: string, port: number, socket: Socket): void {
    socket.on("error", () => undefined); // until piped, a reset client is simply dropped
    if (!this.openStream(workerId, containerId, socket, (streamId) => ({ type: "tunnel.open", streamId, containerId, port }))) {
      this.stats.noWorker += 1;
      socket.destroy();
    }
  }

  /**
   * Asks the worker for a stream of container `containerId` (`open` builds the request from the new
   * stream id: a port to dial, or a shell: gateway/src/shell) and pipes it to `socket` when it
   * comes; `onFail` hears why it did not. False when the worker is not connected.
   */
  openStream(workerId: string, containerId: string, socket: Socket | Duplex, open: (streamId: string) => GatewayMessage, onFail?: (message: string) => void): boolean {
    const worker = this.workers.get(workerId);
    if (!worker) return false;
    const streamId = randomUUID();
    const timer = setTimeout(() => this.fail(streamId, `no tunnel from the worker within ${this.openTimeoutMs} ms`), this.openTimeoutMs);
    timer.unref();
    // Sockets and other duplexes are used alike here (pipe, pause/resume, destroy, events).
    const s = socket as Socket;
    this.pending.set(streamId, { workerId, containerId, tokenId: worker.tokenId, socket: s, timer, ...(onFail && { onFail }) });
    s.once("close", () => {
      if (this.pending.get(streamId)?.socket === s) this.fail(streamId, "the client left before the tunnel opened");
    });
    worker.send(open(streamId));
    return true;
  }
}
