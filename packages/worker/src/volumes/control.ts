/**
 * How code in a container asks its worker to commit or reload a volume it mounts: a Unix socket,
 * one per container, bound read-only into it at CONTROL_DIR (the SDKs find it through
 * BETA9_VOLUME_CONTROL). The socket is the container's identity: whatever connects to it speaks
 * for that container alone, so a request can only name the container's own volumes (anything else
 * is VOLUME_NOT_MOUNTED), and no token is needed or handed to tenant code. No network route is
 * involved, so a container without network (or with egress blocked) can still commit.
 *
 * HTTP/1.1 with JSON bodies, errors as the gateway's `{ error: { code, message } }`:
 *   POST /volume/commit    { name }            → { name, version, changed, removed, busy, skipped }
 *   POST /volume/reload    { name }            → { name, version, source, files, remove, kept }
 *   POST /volume/reloaded  { name, version }   → { name, version }
 *
 * Bounded: bodies of 4 KiB, a few requests in flight per container (each volume's work is
 * serialised by mounts.ts), 8 connections, 5 s to send headers and 10 s a whole request, idle
 * connections closed.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { chmod, rm, rmdir } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { Beta9Error } from "@beta9/protocol";

/** Where the control socket's directory is bound inside a container, and the socket's name in it. */
export const CONTROL_DIR = "/.beta9-volumes/control";
export const CONTROL_SOCKET = `${CONTROL_DIR}/worker.sock`;
/** Where volume `i`'s snapshots are bound read-only inside a container (the source of a reload's copies). */
export const snapshotsDir = (i: number) => `/.beta9-volumes/${i}`;

const MAX_BODY = 4096;
const MAX_IN_FLIGHT = 4;
/**
 * Connections a container may hold open at once (more are closed as they come), and how long one
 * may take to send its headers and its whole request (bodies are 4 KiB at most): a container that
 * opens connections and never finishes a request cannot hold the worker's descriptors.
 */
export const CONTROL_MAX_CONNECTIONS = 8;
export const CONTROL_HEADERS_TIMEOUT_MS = 5_000;
export const CONTROL_REQUEST_TIMEOUT_MS = 10_000;

export interface ControlHandler {
  commit(name: string): Promise<object>;
  reload(name: string): Promise<object>;
  reloaded(name: string, version: number): Promise<object>;
}

/**
 * A short host directory for one container's socket: a Unix socket path must fit in 107 bytes,
 * and a worker's state dir can be long, so the directory is named by a hash under /run.
 */
export function controlHostDir(stateDir: string, containerId: string): string {
  const h = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 16);
  return join("/run/beta9-volumes", h(stateDir), h(containerId));
}

export async function listenControl(dir: string, handler: ControlHandler): Promise<Server> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, "worker.sock");
  await rm(path, { force: true });
  let inFlight = 0;
  const server = createServer({
    maxHeaderSize: 8192, headersTimeout: CONTROL_HEADERS_TIMEOUT_MS, requestTimeout: CONTROL_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1_000,
  }, (req, res) => {
    if (inFlight >= MAX_IN_FLIGHT) return answer(res, new Beta9Error("QUOTA_EXCEEDED", { count: inFlight, kind: "volume requests in flight from this container", limit: MAX_IN_FLIGHT, hint: "wait for one to finish" }));
    inFlight += 1;
    void handle(req, handler).then((body) => answer(res, body), (err: unknown) => answer(res, err)).finally(() => (inFlight -= 1));
  });
  server.keepAliveTimeout = 5000;
  server.maxConnections = CONTROL_MAX_CONNECTIONS;
  // A request not whole in time (or not HTTP): the connection goes, whatever state it is in.
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  // Any user in the container may connect (it may run as nobody, or in a user namespace).
  await chmod(path, 0o666);
  return server;
}

export async function closeControl(server: Server | undefined, dir: string): Promise<void> {
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  await rm(dir, { recursive: true, force: true });
  await rmdir(dirname(dir)).catch(() => {}); // the worker's directory, once its last container is gone
}

async function handle(req: IncomingMessage, handler: ControlHandler): Promise<object> {
  const body = await readBody(req);
  const name = typeof body.name === "string" ? body.name : undefined;
  if (req.method !== "POST" || !name) {
    throw new Beta9Error("BAD_REQUEST", { reason: "POST /volume/commit, /volume/reload or /volume/reloaded with a JSON body naming the volume: {\"name\": \"…\"}" });
  }
  if (req.url === "/volume/commit") return handler.commit(name);
  if (req.url === "/volume/reload") return handler.reload(name);
  if (req.url === "/volume/reloaded" && Number.isInteger(body.version)) return handler.reloaded(name, body.version as number);
  throw new Beta9Error("ROUTE_NOT_FOUND", { method: req.method, url: String(req.url).slice(0, 100) });
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Beta9Error("BODY_TOO_LARGE", { limit: MAX_BODY });
    chunks.push(chunk as Buffer);
  }
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as unknown;
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch (err) {
    throw new Beta9Error("INVALID_JSON", { reason: (err as Error).message });
  }
  throw new Beta9Error("INVALID_JSON", { reason: "expected an object" });
}

function answer(res: ServerResponse, result: unknown): void {
  if (res.headersSent) return;
  let status = 200;
  let body = result;
  if (result instanceof Beta9Error) {
    status = result.status;
    body = result.toBody();
  } else if (result instanceof Error) {
    // A failure on the worker's side (the gateway unreachable, a disk error): the message says which.
    const transient = (result as { transient?: boolean }).transient === true;
    const own = (result as { status?: unknown }).status;
    // Only a real HTTP error status passes on (a download's "unreachable" carries 0): writeHead would throw on another.
    status = transient ? 503 : typeof own === "number" && Number.isInteger(own) && own >= 400 && own <= 599 ? own : 500;
    const code = (result as { code?: string }).code ?? "INTERNAL";
    body = { error: { code: /^[A-Z_0-9]+$/.test(code) ? code : "INTERNAL", message: result.message } };
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
