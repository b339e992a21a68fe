/**
 * Shell sessions (`beta9 shell`, `sandbox.process.pty()`; frames in @beta9/protocol shell-protocol.ts).
 *
 * A client first POSTs …/shell (api/shell.ts: token, workspace and target checked, errors as JSON)
 * and gets a ticket: good once, for TICKET_TTL_MS, for the token that asked. It then opens the
 * WebSocket `${SHELL_SOCKET_PATH}/:ticket` with that token; the gateway asks the container's
 * worker for a tunnel stream (`shell.open`, scheduler/tunnels.ts: the same path as tunnelled
 * ports, so machines behind NAT work too) and relays: the client's frames, each checked, to the
 * worker; the worker's bytes to the client as they come.
 *
 * Bounds: tickets and sessions per workspace together (maxPerWorkspace); the client's messages
 * (one frame each, MAX_SHELL_FRAME); backpressure both ways (a client that does not read pauses
 * the worker's stream through the tunnel; a worker that does not take input stops reads from the
 * client's socket). A session ends with the token's revocation, the container's end (the tunnel
 * hub cuts its streams), either side leaving, or a client that stops answering pings.
 */
import { randomBytes } from "node:crypto";
import { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import {
  Beta9Error, checkClientFrame, DEFAULT_SHELL_COMMAND, shellFrame, SHELL_ERROR, type ShellOpenBody, type ShellTicket,
} from "@beta9/protocol";
import type { TokenRepo } from "../store/types.js";
import type { TunnelHub } from "../scheduler/tunnels.js";
import type { Scheduler } from "../scheduler/scheduler.js";

export const TICKET_TTL_MS = 30_000;
export const MAX_SHELLS_PER_WORKSPACE = 16;
const PING_MS = 30_000;
/** Gateway → client: the worker never opened the stream, or refused it. */
export const CLOSE_SHELL_FAILED = 4500;

export interface ShellSessionsOptions {
  tunnels: TunnelHub;
  tokens: TokenRepo;
  scheduler: Scheduler;
  logger?: Logger;
  maxPerWorkspace?: number;
}

interface Ticket {
  id: string;
  tokenId: string;
  workspaceId: string;
  containerId: string;
  body: ShellOpenBody;
  timer: NodeJS.Timeout;
}

interface Live {
  workspaceId: string;
  tokenId: string;
  containerId: string;
  ws: WebSocket;
  stream: Duplex;
}

export class ShellSessions {
  private readonly tickets = new Map<string, Ticket>();
  private readonly live = new Set<Live>();
  private readonly stopRevocations: () => void;
  /** Sessions by outcome since start (tests and metrics). */
  readonly stats = { opened: 0, failed: 0 };

  constructor(private readonly o: ShellSessionsOptions) {
    this.stopRevocations = o.tokens.onRevoked((tokenId) => {
      for (const t of [...this.tickets.values()]) if (t.tokenId === tokenId) this.drop(t);
      for (const s of this.live) if (s.tokenId === tokenId) this.end(s, 4002, "token revoked");
    });
  }

  /** Sessions and unused tickets of a workspace. */
  count(workspaceId: string): number {
    let n = 0;
    for (const t of this.tickets.values()) if (t.workspaceId === workspaceId) n += 1;
    for (const s of this.live) if (s.workspaceId === workspaceId) n += 1;
    return n;
  }

  /** A ticket for a container the caller's workspace owns and that runs (checked by the route). */
  ticket(auth: { id: string; workspaceId: string }, containerId: string, body: ShellOpenBody): ShellTicket {
    const limit = this.o.maxPerWorkspace ?? MAX_SHELLS_PER_WORKSPACE;
    const count = this.count(auth.workspaceId);
    if (count >= limit) throw new Beta9Error("QUOTA_EXCEEDED", { count, kind: "shell sessions", limit, hint: "exit some shells first" });
    const id = randomBytes(18).toString("base64url");
    const t: Ticket = { id, tokenId: auth.id, workspaceId: auth.workspaceId, containerId, body, timer: setTimeout(() => this.drop(t), TICKET_TTL_MS) };
    t.timer.unref();
    this.tickets.set(id, t);
    return { ticket: id, containerId, expiresInSeconds: TICKET_TTL_MS / 1000 };
  }

  /** Consumes a ticket issued to `tokenId`; undefined if there is none (expired, used, another token's). */
  take(id: string, tokenId: string): Ticket | undefined {
    const t = this.tickets.get(id);
    if (!t || t.tokenId !== tokenId) return undefined;
    this.drop(t);
    return t;
  }

  /** The worker the ticket's container runs on now; a 409 when it no longer runs. */
  workerOf(t: Ticket): string {
    const c = this.o.scheduler.containers.get(t.containerId);
    if (!c || c.workspaceId !== t.workspaceId || c.state !== "RUNNING" || c.workerId === null) {
      throw new Beta9Error("CONTAINER_NOT_RUNNING", { id: t.containerId, state: c?.state ?? "gone" });
    }
    return c.workerId;
  }

  /** Relays an upgraded client socket to a new shell process of the ticket's container on `workerId`. */
  start(ws: WebSocket, t: Ticket, workerId: string): void {
    const b = t.body;
    const tty = b.tty ?? true;
    let failed = false;
    const stream = new Duplex({
      highWaterMark: 256 * 1024,
      // Worker → client; past highWaterMark unsent, write() says so and the tunnel pauses the worker.
      write(chunk: Buffer, _encoding, callback) {
        if (ws.readyState !== ws.OPEN) return callback();
        // Done once handed to the client's TCP socket: a client that does not read holds this up.
        ws.send(chunk, { binary: true }, () => callback());
      },
      final(callback) {
        // The worker's side ended (after the exit frame): the session is over.
        ws.close(1000, "exited");
        callback();
      },
      read() {
        ws.resume();
      },
    });
    const s: Live = { workspaceId: t.workspaceId, tokenId: t.tokenId, containerId: t.containerId, ws, stream };
    this.live.add(s);
    stream.on("error", () => undefined);
    stream.on("close", () => {
      if (ws.readyState === ws.OPEN) ws.close(failed ? CLOSE_SHELL_FAILED : 1000, failed ? "shell failed" : "closed");
      setTimeout(() => ws.terminate(), 5000).unref();
    });
    ws.on("message", (data, isBinary) => {
      const frame = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      const bad = isBinary ? checkClientFrame(frame) : "a text message (frames are binary)";
      if (bad) {
        ws.send(shellFrame(SHELL_ERROR, Buffer.from(`refused ${bad}`)), { binary: true }, () => undefined);
        return this.end(s, 1008, "bad frame");
      }
      // The worker has not taken what came before: stop reading the client until it has.
      if (!stream.push(frame)) ws.pause();
    });
    let alive = true;
    const ping = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, PING_MS);
    ping.unref();
    ws.on("pong", () => (alive = true));
    ws.on("error", () => ws.terminate());
    ws.on("close", () => {
      clearInterval(ping);
      this.live.delete(s);
      // The client left: the worker's end is ended (the process gets a hangup), then cut if it lingers.
      stream.push(null);
      setTimeout(() => stream.destroy(), 5000).unref();
    });
    const opened = this.o.tunnels.openStream(workerId, t.containerId, stream, (streamId) => ({
      type: "shell.open", streamId, containerId: t.containerId,
      command: b.command?.length ? b.command : DEFAULT_SHELL_COMMAND, tty,
      cols: b.cols ?? 80, rows: b.rows ?? 24,
      env: { TERM: b.term ?? (tty ? "xterm-256color" : "dumb") },
      ...(b.cwd !== undefined && { cwd: b.cwd }),
    }), (why) => {
      failed = true;
      this.stats.failed += 1;
      if (ws.readyState === ws.OPEN) ws.send(shellFrame(SHELL_ERROR, Buffer.from(why)), { binary: true }, () => undefined);
    });
    if (!opened) {
      failed = true;
      this.stats.failed += 1;
      ws.send(shellFrame(SHELL_ERROR, Buffer.from(`the worker of container ${t.containerId} is not connected`)), { binary: true }, () => undefined);
      stream.destroy();
      return;
    }
    this.stats.opened += 1;
    this.o.logger?.info({ containerId: t.containerId, workerId, tty }, "shell session opened");
  }

  close(): void {
    this.stopRevocations();
    for (const t of [...this.tickets.values()]) this.drop(t);
    for (const s of this.live) this.end(s, 1001, "gateway shutting down");
  }

  private drop(t: Ticket): void {
    clearTimeout(t.timer);
    this.tickets.delete(t.id);
  }

  private end(s: Live, code: number, reason: string): void {
    this.live.delete(s);
    s.stream.destroy();
    if (s.ws.readyState === s.ws.OPEN) s.ws.close(code, reason);
    setTimeout(() => s.ws.terminate(), 2000).unref();
  }
}
