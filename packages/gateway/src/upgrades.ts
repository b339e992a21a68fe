/**
 * Who takes an HTTP upgrade, decided once per request from one path: the worker protocol's sockets
 * (scheduler/worker-socket.ts) or the API's routes (api/websocket.ts). Both ask `claimUpgrade`,
 * which computes the path once (dot segments, encoded ones too, resolved as a URL parser does) and
 * gives each upgrade to at most one of them. A path that is not in that normal form (`/a/../b`,
 * `/a/%2e%2e/b`, `\`) is refused with a 400: no handler ever sees a path another would read
 * differently. An upgrade nobody took (a refused path, a worker path on a server without the worker
 * protocol) is answered and its socket destroyed: the server stops reading an upgraded socket, so
 * one left alone would stay open for as long as its client likes.
 */
import { STATUS_CODES, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { Beta9Error, WORKER_CONNECT_PATH, WORKER_TUNNEL_PATH } from "@beta9/protocol";

export type UpgradeOwner = "worker" | "api";

interface Decision {
  /** The normalized path (no query); undefined when the request's path is not in normal form. */
  path: string | undefined;
  owner: UpgradeOwner | undefined;
  claimed: boolean;
}

const decisions = new WeakMap<IncomingMessage, Decision>();
const guarded = new WeakSet<object>();
/** A socket answered and ended is destroyed after this even when its client never reads the answer. */
const ANSWER_GRACE_MS = 2_000;

/** A request target's path in normal form, or undefined when resolving it would change it (or it is not a path). */
export function normalUpgradePath(url: string): string | undefined {
  const q = url.indexOf("?");
  const raw = q === -1 ? url : url.slice(0, q);
  if (!raw.startsWith("/")) return undefined;
  let path: string;
  try {
    // Prefixed with an origin, so that "//host/x" stays a path.
    path = new URL(`http://gateway${raw}`).pathname;
  } catch {
    return undefined;
  }
  return path === raw ? path : undefined;
}

/** Whether a (normalized) path is the worker protocol's. */
export const isWorkerUpgradePath = (path: string): boolean => path === WORKER_CONNECT_PATH || path.startsWith(`${WORKER_TUNNEL_PATH}/`);

function decide(req: IncomingMessage): Decision {
  let d = decisions.get(req);
  if (!d) {
    const path = normalUpgradePath(req.url ?? "/");
    d = { path, owner: path === undefined ? undefined : isWorkerUpgradePath(path) ? "worker" : "api", claimed: false };
    decisions.set(req, d);
  }
  return d;
}

/** The upgrade's path, as `claimUpgrade` decided it (undefined: refused, not in normal form). */
export const upgradePath = (req: IncomingMessage): string | undefined => decide(req).path;

/**
 * Takes the upgrade for `owner` when it is that owner's and nobody took it yet: its normalized
 * path, else undefined (leave the socket alone; it is someone else's, or it gets refused).
 */
export function claimUpgrade(req: IncomingMessage, owner: UpgradeOwner): string | undefined {
  const d = decide(req);
  if (d.owner !== owner || d.claimed || d.path === undefined) return undefined;
  d.claimed = true;
  return d.path;
}

/** Writes `text` (a whole HTTP response, or nothing more) and destroys the socket once it is flushed, or after a grace. */
export function answerAndClose(socket: Duplex, text?: string): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), ANSWER_GRACE_MS);
  timer.unref();
  const done = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  if (socket.writableFinished) return done();
  if (socket.writableEnded) return void socket.once("finish", done);
  if (text) socket.end(text, done);
  else socket.end(done);
}

/** A JSON error as the whole answer on a socket nothing was written to yet; the socket is then closed. */
export function answerError(socket: Duplex, err: Beta9Error): void {
  const body = JSON.stringify(err.toBody());
  answerAndClose(socket, `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * Answers and closes every upgrade on `server` that no handler claimed in the same turn (handlers
 * decide synchronously). Idempotent: each handler calls it for its server.
 */
export function guardUpgrades(server: Server | { on: Server["on"] }): void {
  if (guarded.has(server)) return;
  guarded.add(server);
  (server as Server).on("upgrade", (req: IncomingMessage, socket: Duplex) => {
    socket.on("error", () => socket.destroy());
    setImmediate(() => {
      const d = decide(req);
      if (d.claimed || socket.destroyed) return;
      answerError(socket, d.path === undefined
        ? new Beta9Error("BAD_REQUEST", { reason: "an upgrade's path must be in normal form (no . or .. segments, encoded or not)" })
        : new Beta9Error("RESOURCE_NOT_FOUND", { kind: "upgrade path", id: d.path.slice(0, 128) }));
    });
  });
}
