/**
 * The gateway end of the worker protocol: authenticates the WebSocket upgrade with a worker,
 * admin or machine token, expects a hello first, then feeds states, logs and keepalives to the
 * scheduler. A machine token makes the worker that machine: its id is the machine id and its pool
 * the machine's, whatever the hello says. Workers the gateway cannot dial (machines, unless they
 * say `reachable: true`) get their container ports tunnelled over their own connection (tunnels.ts).
 * Nothing a worker says is taken on trust (worker-trust.ts): messages are schema-checked, and
 * reports count only for containers placed on it, only for their requested ports.
 */
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import {
  Beta9Error, WORKER_TUNNEL_PATH, type ContainerRequest, type ContainerStateReport, type GatewayMessage, type WorkerMessage,
} from "@beta9/protocol";
import type { ImageBuilds } from "../images/image-builds.js";
import type { AuthenticatedToken, TokenRepo } from "../store/types.js";
import type { LogStore } from "../logs/types.js";
import type { ConnectedWorker, Scheduler } from "./scheduler.js";
import { TunnelHub, type TunnelWorker } from "./tunnels.js";
import { answerError, claimUpgrade, guardUpgrades } from "../upgrades.js";
import { INVALID_MESSAGE_CLOSE_CODE, acceptHelloContainers, ownRequest, parseWorkerMessage, routePorts } from "./worker-trust.js";

const HELLO_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** A refusal answered as HTTP; the socket is closed once it is written (a client that never closes is no reason to keep it). */
const refuse = (socket: Duplex, err: Beta9Error): void => answerError(socket, err);

function bearer(request: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "");
  return match?.[1];
}

/** Who a machine token's worker is; a Beta9Error refuses the connection (deleted or expired machine). */
export interface MachineWorkerIdentity {
  workerId: string;
  pool: string;
  /** The machine's workspace: its worker runs only that workspace's containers. */
  workspaceId: string;
  cordoned: boolean;
  draining: boolean;
}
export type MachineWorkerResolver = (tokenId: string) => Promise<MachineWorkerIdentity | Beta9Error>;

export interface WorkerSocketOptions {
  server: Server;
  tokens: TokenRepo;
  scheduler: Scheduler;
  builds: ImageBuilds;
  keepaliveMs: number;
  logger: Logger;
  /** Without it, machine tokens are refused. */
  machineWorker?: MachineWorkerResolver;
  tunnels?: TunnelHub;
  /** Stop grace for containers of a draining machine that reconnects with them still running. */
  drainGraceMs?: number;
  /** Where container log lines are kept for good (beside the live registry's bounded history). */
  logs?: LogStore;
}

interface Connection {
  auth: AuthenticatedToken;
  machine: MachineWorkerIdentity | undefined;
  /** Where the connection came from: the only address a machine may have its ports dialled at. */
  remoteAddress: string | undefined;
}

/** Handles upgrades on the worker paths; returns a function that closes every worker socket. */
export function attachWorkerSocket(options: WorkerSocketOptions): () => void {
  const { server, tokens, logger } = options;
  const tunnels = options.tunnels ?? new TunnelHub(logger);
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const tunnelWss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const unsubscribe = options.scheduler.containers.subscribe("*", (event) => {
    if (event.kind === "state" && event.container.state === "EXITED") tunnels.release(event.container.id);
  });
  const onLost = (workerId: string) => tunnels.releaseWorker(workerId);
  options.scheduler.events.on("worker_lost", onLost);
  // A revoked token's worker connection and tunnels close at once, not at their next reconnect.
  const tokenOf = new WeakMap<WebSocket, string>();
  const stopRevocations = tokens.onRevoked((tokenId) => {
    for (const ws of wss.clients) {
      if (tokenOf.get(ws) !== tokenId) continue;
      ws.close(4002, "token revoked");
      setTimeout(() => ws.terminate(), 2000).unref(); // a peer that ignores the close handshake is cut anyway
    }
    for (const ws of tunnelWss.clients) if (tokenOf.get(ws) === tokenId) ws.terminate();
  });

  guardUpgrades(server);
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The path is decided once for every handler (upgrades.ts); other upgrades are the API's (api/websocket.ts routes them).
    const path = claimUpgrade(request, "worker");
    if (path === undefined) return;
    const streamId = path.startsWith(`${WORKER_TUNNEL_PATH}/`) ? path.slice(WORKER_TUNNEL_PATH.length + 1) : undefined;
    void (async () => {
      const key = bearer(request);
      if (!key) return refuse(socket, new Beta9Error("AUTH_TOKEN_MISSING"));
      const auth = await tokens.authenticate(key);
      if (!auth) return refuse(socket, new Beta9Error("AUTH_TOKEN_INVALID"));
      if (auth.type !== "worker" && auth.type !== "admin" && auth.type !== "machine") {
        return refuse(socket, new Beta9Error("AUTH_FORBIDDEN", { tokenType: auth.type, action: "connect as a worker", allowed: "worker, machine or admin" }));
      }
      if (streamId !== undefined) {
        if (!tunnels.expects(streamId, auth.id)) return refuse(socket, new Beta9Error("RESOURCE_NOT_FOUND", { kind: "tunnel stream", id: streamId }));
        tunnelWss.handleUpgrade(request, socket, head, (ws) => {
          tokenOf.set(ws, auth.id);
          tunnels.attach(streamId, ws, auth.id);
        });
        return;
      }
      let machine: MachineWorkerIdentity | undefined;
      if (auth.type === "machine") {
        const resolved = options.machineWorker ? await options.machineWorker(auth.id) : new Beta9Error("AUTH_FORBIDDEN", {
          tokenType: "machine", action: "connect as a worker on this gateway", allowed: "worker or admin",
        });
        if (resolved instanceof Beta9Error) return refuse(socket, resolved);
        machine = resolved;
      }
      wss.handleUpgrade(request, socket, head, (ws) => {
        tokenOf.set(ws, auth.id);
        serveWorker(ws, { auth, machine, remoteAddress: request.socket.remoteAddress }, options, tunnels);
      });
    })().catch((err: unknown) => {
      logger.error({ err }, "worker upgrade failed");
      socket.destroy();
    });
  });
  return () => {
    stopRevocations();
    unsubscribe();
    options.scheduler.events.off("worker_lost", onLost);
    for (const ws of wss.clients) ws.close(1001, "gateway shutting down");
    for (const ws of tunnelWss.clients) ws.terminate();
    wss.close();
    tunnelWss.close();
    tunnels.close();
  };
}

function serveWorker(ws: WebSocket, conn: Connection, options: WorkerSocketOptions, tunnels: TunnelHub): void {
  const { scheduler, builds, keepaliveMs, logger } = options;
  let worker: ConnectedWorker | undefined;
  let tunnelled = false;
  let tunnelWorker: TunnelWorker | undefined;
  const send = (message: GatewayMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  const helloTimer = setTimeout(() => ws.close(4000, "no hello within 10 s"), HELLO_TIMEOUT_MS);
  // Listener addresses take a tick to open, so messages are handled one after another in order.
  let chain: Promise<void> = Promise.resolve();
  // Only the ports the container's request asked for; tunnelled unless the gateway may dial them (worker-trust.ts).
  const withPorts = <T extends ContainerStateReport>(workerId: string, report: T, request: ContainerRequest): Promise<T> =>
    routePorts(report, request, { tunnelled, machine: conn.machine !== undefined, remoteAddress: conn.remoteAddress,
      expose: (containerId, ports) => tunnels.expose(workerId, containerId, ports) });

  const handle = async (message: WorkerMessage): Promise<void> => {
    if (!worker) {
      if (message.type !== "hello") {
        send({ type: "error", code: "BAD_REQUEST", message: "the first message must be hello" });
        ws.close(4001, "hello expected");
        return;
      }
      clearTimeout(helloTimer);
      const machine = conn.machine;
      const id = machine?.workerId ?? message.workerId;
      tunnelled = machine ? message.reachable !== true : message.reachable === false;
      const { accepted, refused } = acceptHelloContainers(scheduler, id, machine?.workspaceId, message.containers);
      const containers = await Promise.all(accepted.map((c) => withPorts(id, c, scheduler.containers.get(c.containerId)?.request ?? c.request)));
      worker = {
        id, hostname: message.hostname, pool: machine?.pool ?? message.pool, runtime: message.runtime,
        ...(machine && { workspaceId: machine.workspaceId }),
        isolates: message.isolates, allowUnisolated: message.allowUnisolated === true, filtersEgress: message.filtersEgress === true,
        capacity: message.capacity, connected: true,
        cordoned: machine ? machine.cordoned || machine.draining : false, lastSeenAt: Date.now(),
        send, close: (reason) => ws.close(4002, reason.slice(0, 120)),
      };
      tunnelWorker = { tokenId: conn.auth.id, send };
      tunnels.setWorker(id, tunnelWorker);
      send({ type: "welcome", workerId: worker.id, keepaliveMs });
      for (const containerId of refused) send({ type: "container.stop", containerId });
      scheduler.connect(worker, containers);
      // A draining machine that comes back with work still running finishes draining it.
      if (machine?.draining) scheduler.drain(id, options.drainGraceMs);
      return;
    }
    scheduler.seen(worker.id);
    switch (message.type) {
      case "keepalive":
        break;
      case "container.state": {
        const request = ownRequest(scheduler, worker.id, message.containerId);
        if (request) scheduler.report(worker.id, await withPorts(worker.id, message, request));
        break;
      }
      case "container.logs": {
        const record = scheduler.containers.get(message.containerId);
        if (record?.workerId !== worker.id) break;
        scheduler.containers.appendLogs(message.containerId, message.lines);
        // Who wrote them comes from the record, never from the worker's message.
        options.logs?.append({ workspaceId: record.workspaceId, containerId: record.id, stubId: record.stubId }, message.lines);
        break;
      }
      case "image.logs":
        if (builds.builderOf(message.imageId) === worker.id) builds.append(message.imageId, message.lines);
        break;
      case "image.result":
        if (builds.builderOf(message.imageId) !== worker.id) break;
        void builds.result(message.imageId, message.ok, message.error).catch((err: unknown) => logger.error({ err }, "image result failed"));
        break;
      case "tunnel.failed":
        tunnels.fail(message.streamId, message.message);
        break;
      case "hello":
        send({ type: "error", code: "BAD_REQUEST", message: "hello was already received" });
        break;
      default:
        send({ type: "error", code: "BAD_REQUEST", message: `unknown message type ${JSON.stringify((message as { type?: unknown }).type)}` });
    }
  };

  ws.on("message", (data) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(data));
    } catch {
      send({ type: "error", code: "INVALID_JSON", message: "worker messages are JSON text frames" });
      return;
    }
    const checked = parseWorkerMessage(parsed);
    if ("error" in checked) {
      send({ type: "error", code: "BAD_REQUEST", message: checked.error });
      ws.close(INVALID_MESSAGE_CLOSE_CODE, "invalid worker message");
      return;
    }
    const message = checked.message;
    chain = chain.then(() => handle(message)).catch((err: unknown) => logger.error({ err, type: message.type }, "worker message failed"));
  });
  ws.on("close", () => {
    clearTimeout(helloTimer);
    if (worker) {
      if (tunnelWorker) tunnels.clearWorker(worker.id, tunnelWorker);
      scheduler.disconnect(worker.id, worker);
      logger.info({ workerId: worker.id }, "worker disconnected");
    }
  });
  ws.on("error", (err) => logger.warn({ err }, "worker socket error"));
}
