/**
 * WebSockets (beta9's `realtime`), two ways:
 *
 * - `realtime(opts, handler)`: an endpoint whose handler takes a socket, `(socket, ctx)`. A
 *   WebSocket upgrade to its URL (`/endpoint/<name>`, any path below it, `/public/<stub>` when
 *   `authorized: false`) opens one socket per connection; the handler reads messages with
 *   `for await`, answers with `await socket.send(…)`, and the socket closes when the handler
 *   returns (1000) or throws (1011). `socket.request` is the upgrade as a Fetch Request (path,
 *   query, headers). POSTing the URL is a 409: it takes sockets, not JSON.
 * - In a `webApp()`: `upgradeWebSocket(request)` gives `{ socket, response }`; return `response`
 *   to accept (any other Response refuses the upgrade with that answer).
 *
 * An open socket holds one of its container's `concurrentRequests` slots: it counts as load for
 * scaling and keeps the container from scaling to zero until it closes. Messages are bounded
 * (the gateway closes a socket with 1009 past the workspace's limit, 16 MiB by default) and so are
 * sockets per workspace (1013). Awaiting `send` is backpressure: a slow client slows the handler.
 *
 * @example
 * import { realtime } from "beta9";
 * export const echo = realtime({ name: "echo", concurrentRequests: 100 }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 */
import type { BaseOptions, Context, Handler, Workload } from "./workloads.js";
import { define, wrapperModule } from "./workloads.js";

wrapperModule(import.meta.url);

export type RealtimeMessage = string | Uint8Array;

/** The socket a realtime handler (or a web app that upgraded) gets. */
export interface RealtimeSocket extends AsyncIterable<RealtimeMessage> {
  /** The upgrade request: the path below the endpoint's URL, the query, the caller's headers. */
  readonly request: Request;
  /** The subprotocol agreed on (the first the client offered), or "". */
  readonly protocol: string;
  /** "connecting", "open", "closing" or "closed". */
  readonly readyState: string;
  /** Resolves when the socket is closed, with the close code and reason (1006: the connection dropped). */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Sends text (a string) or binary; resolves when there is room for more. Once closing or closed, the message is dropped. */
  send(data: RealtimeMessage | ArrayBuffer): Promise<void>;
  /** Closes with a code (default 1000; 1000-1014 or 3000-4999) and a reason of at most 123 bytes. */
  close(code?: number, reason?: string): void;
}

export type RealtimeHandler<S = unknown> = (socket: RealtimeSocket, ctx: Context<S>) => unknown;

export interface RealtimeOptions<S = unknown> extends BaseOptions {
  /** Runs once per container before any socket; its value is `ctx.onStartValue`. */
  onStart?: () => S | Promise<S>;
}

/** A realtime endpoint as `realtime()` returns it: deployable and servable; reached with a WebSocket. */
export type Realtime<S = unknown> = Omit<Workload<RealtimeSocket, unknown, S>, "remote" | "map" | "put">;

export function realtime<S = undefined>(options: RealtimeOptions<S>, handler: RealtimeHandler<S>): Realtime<S> {
  const name = typeof options === "object" && options !== null ? options.name : undefined;
  const where = `realtime(${name === undefined ? "" : JSON.stringify(name)})`;
  if (typeof handler !== "function") throw new TypeError(`${where}: the second argument must be a socket handler, (socket, ctx) => …`);
  if (typeof options === "object" && options !== null && "inputs" in options) {
    throw new TypeError(`${where}: inputs is for endpoints that take JSON; a realtime handler reads its own messages`);
  }
  const workload = define("endpoint", options as BaseOptions, handler as Handler<unknown, unknown, unknown>, { realtime: true });
  const refuse = (what: string) => () => {
    throw new TypeError(`${where}.${what}(): a realtime endpoint takes WebSockets: connect to its URL (beta9 deploy prints it)`);
  };
  return Object.freeze({ ...workload, remote: refuse("remote"), map: refuse("map"), put: refuse("put") }) as Realtime<S>;
}

const UPGRADE_WEBSOCKET = Symbol.for("beta9.upgradeWebSocket");

/**
 * In a web app: accepts the WebSocket `request` asks for. Return `response` from the app; use
 * `socket` from then on (messages sent before the app returns wait for the handshake's end).
 * Throws when the request is not an upgrade (check `request.headers.get("upgrade")` first).
 *
 * @example
 * export const app = webApp({ name: "chat" }, (request) => {
 *   if (request.headers.get("upgrade") !== "websocket") return new Response("connect with a WebSocket", { status: 426 });
 *   const { socket, response } = upgradeWebSocket(request);
 *   void (async () => { for await (const m of socket) await socket.send(m); })();
 *   return response;
 * });
 */
export function upgradeWebSocket(request: Request): { socket: RealtimeSocket; response: Response } {
  const upgrade = (request as unknown as Record<symbol, unknown>)[UPGRADE_WEBSOCKET];
  if (typeof upgrade !== "function") {
    throw new TypeError("upgradeWebSocket(request): this request is not a WebSocket upgrade to a deployed web app (GET with Upgrade: websocket)");
  }
  return (upgrade as () => { socket: RealtimeSocket; response: Response })();
}
