/**
 * The gateway end of the worker protocol: authenticates the WebSocket upgrade with a worker (or
 * admin) token, expects a hello first, then feeds states, logs and keepalives to the scheduler.
 */
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import { Beta9Error, WORKER_CONNECT_PATH, type GatewayMessage, type WorkerMessage } from "@beta9/protocol";
import type { ImageBuilds } from "../images/image-builds.js";
import type { TokenRepo } from "../store/types.js";
import type { ConnectedWorker, Scheduler } from "./scheduler.js";

const HELLO_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

function refuse(socket: Duplex, err: Beta9Error): void {
  const body = JSON.stringify(err.toBody());
  socket.end(`HTTP/1.1 ${err.status} ${err.status === 401 ? "Unauthorized" : "Forbidden"}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

function bearer(request: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "");
  return match?.[1];
}

export interface WorkerSocketOptions {
  server: Server;
  tokens: TokenRepo;
  scheduler: Scheduler;
  builds: ImageBuilds;
  keepaliveMs: number;
  logger: Logger;
}

/** Handles upgrades on the worker path; returns a function that closes every worker socket. */
export function attachWorkerSocket({ server, tokens, scheduler, builds, keepaliveMs, logger }: WorkerSocketOptions): () => void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (new URL(request.url ?? "/", "http://x").pathname !== WORKER_CONNECT_PATH) {
      socket.destroy();
      return;
    }
    void (async () => {
      const key = bearer(request);
      if (!key) return refuse(socket, new Beta9Error("AUTH_TOKEN_MISSING"));
      const auth = await tokens.authenticate(key);
      if (!auth) return refuse(socket, new Beta9Error("AUTH_TOKEN_INVALID"));
      if (auth.type !== "worker" && auth.type !== "admin") {
        return refuse(socket, new Beta9Error("AUTH_FORBIDDEN", { tokenType: auth.type, action: "connect as a worker", allowed: "worker or admin" }));
      }
      wss.handleUpgrade(request, socket, head, (ws) => serveWorker(ws, scheduler, builds, keepaliveMs, logger));
    })().catch((err: unknown) => {
      logger.error({ err }, "worker upgrade failed");
      socket.destroy();
    });
  });
  return () => {
    for (const ws of wss.clients) ws.close(1001, "gateway shutting down");
    wss.close();
  };
}

function serveWorker(ws: WebSocket, scheduler: Scheduler, builds: ImageBuilds, keepaliveMs: number, logger: Logger): void {
  let worker: ConnectedWorker | undefined;
  const send = (message: GatewayMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  const helloTimer = setTimeout(() => ws.close(4000, "no hello within 10 s"), HELLO_TIMEOUT_MS);

  ws.on("message", (data) => {
    let message: WorkerMessage;
    try {
      message = JSON.parse(String(data)) as WorkerMessage;
    } catch {
      send({ type: "error", code: "INVALID_JSON", message: "worker messages are JSON text frames" });
      return;
    }
    if (!worker) {
      if (message.type !== "hello") {
        send({ type: "error", code: "BAD_REQUEST", message: "the first message must be hello" });
        ws.close(4001, "hello expected");
        return;
      }
      clearTimeout(helloTimer);
      worker = {
        id: message.workerId, hostname: message.hostname, pool: message.pool, runtime: message.runtime,
        isolates: message.isolates, capacity: message.capacity, connected: true, cordoned: false, lastSeenAt: Date.now(),
        send, close: (reason) => ws.close(4002, reason.slice(0, 120)),
      };
      send({ type: "welcome", workerId: worker.id, keepaliveMs });
      scheduler.connect(worker, message.containers ?? []);
      return;
    }
    scheduler.seen(worker.id);
    switch (message.type) {
      case "keepalive":
        break;
      case "container.state":
        scheduler.report(worker.id, message);
        break;
      case "container.logs": {
        const record = scheduler.containers.get(message.containerId);
        if (record?.workerId === worker.id) scheduler.containers.appendLogs(message.containerId, message.lines);
        break;
      }
      case "image.logs":
        builds.append(message.imageId, message.lines);
        break;
      case "image.result":
        void builds.result(message.imageId, message.ok, message.error).catch((err: unknown) => logger.error({ err }, "image result failed"));
        break;
      case "hello":
        send({ type: "error", code: "BAD_REQUEST", message: "hello was already received" });
        break;
      default:
        send({ type: "error", code: "BAD_REQUEST", message: `unknown message type ${JSON.stringify((message as { type?: unknown }).type)}` });
    }
  });
  ws.on("close", () => {
    clearTimeout(helloTimer);
    if (worker) {
      scheduler.disconnect(worker.id, worker);
      logger.info({ workerId: worker.id }, "worker disconnected");
    }
  });
  ws.on("error", (err) => logger.warn({ err }, "worker socket error"));
}
