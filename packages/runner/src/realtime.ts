/**
 * WebSocket upgrades on the runner (runner-protocol.ts, REALTIME_PATH_PREFIX):
 * - `GET /realtime/<path>?<q>`: a realtime endpoint. The socket is accepted, then the handler is
 *   called with it, `(socket, ctx)`; `socket.request` is the upgrade as a Fetch Request. The
 *   socket closes when the handler returns (1000) or throws (1011 with the message).
 * - `GET /web/<path>?<q>`: a web app. Its Request carries an upgrade function under
 *   `Symbol.for("beta9.upgradeWebSocket")` (the SDK's `upgradeWebSocket(request)` calls it): the
 *   app gets `{ socket, response }` and returns `response` to accept. Any other Response is sent
 *   as the answer to the upgrade (an app's 401 or 404), and no socket opens.
 * A socket holds an invocation slot until it closes; `ctx.signal` aborts when it does.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { REALTIME_PATH_PREFIX, WEB_PATH_PREFIX } from "./constants.js";
import { sendError } from "./http.js";
import { answer, authorized, isWebPath, taskIdOf, type RunnerState } from "./server.js";
import { webRequest } from "./web.js";
import { ServerWebSocket, upgradeProblem } from "./websocket.js";

/** Where the SDK's upgradeWebSocket(request) finds the runner's upgrade function. */
export const UPGRADE_WEBSOCKET = Symbol.for("beta9.upgradeWebSocket");

const isRealtimePath = (url: string): boolean =>
  url.startsWith(REALTIME_PATH_PREFIX) && (url.length === REALTIME_PATH_PREFIX.length || "/?".includes(url[REALTIME_PATH_PREFIX.length]!));

/** An HTTP answer on a socket the server handed over for an upgrade; the connection ends with it. */
function rawResponse(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once("finish", () => socket.end());
  return res;
}

export async function handleUpgrade(state: RunnerState, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  socket.on("error", () => socket.destroy());
  const res = rawResponse(req, socket);
  const url = req.url ?? "/";
  if (!authorized(state, req)) return sendError(res, 401, "AUTH_TOKEN_INVALID", "this runner answers its gateway only");
  const { invoker } = state;
  if (state.phase === "stopping") return sendError(res, 503, "SHUTTING_DOWN", "the runner is shutting down; connect to another container");
  if (!invoker) return sendError(res, 503, "NOT_READY", "the workload is still loading; retry when GET /health answers 200");
  const problem = upgradeProblem(req);
  if (problem) return sendError(res, 400, "BAD_UPGRADE", problem);
  const realtime = isRealtimePath(url);
  if (!realtime && !isWebPath(url)) return sendError(res, 404, "ROUTE_NOT_FOUND", `the runner has no WebSocket route ${url.split("?")[0]}`);
  if (realtime && !invoker.realtime) return sendError(res, 404, "NOT_REALTIME", "this workload takes no WebSockets (realtime() from beta9)");
  if (!realtime && !invoker.webApp) return sendError(res, 404, "NOT_A_WEB_APP", "this workload is not a web app (webApp() from beta9)");
  const invocation = invoker.begin(taskIdOf(req));
  if (!invocation) return sendError(res, 503, "BUSY", `all ${state.concurrency} invocation slot(s) of this container are taken`);
  const ws = new ServerWebSocket(socket, req, head);
  const { signal } = invocation.controller;
  void ws.closed.then(() => invocation.controller.abort(new DOMException("the WebSocket closed", "AbortError")));
  try {
    if (realtime) {
      ws.request = webRequest(req, url.slice(REALTIME_PATH_PREFIX.length), signal, { upgrade: true });
      ws.accept();
      const err = await invoker.runRealtime(invocation, ws);
      ws.close(err ? 1011 : 1000, err ? err.message : "");
      await ws.closed;
      return;
    }
    let marker: Response | undefined;
    const request = webRequest(req, url.slice(WEB_PATH_PREFIX.length), signal, { upgrade: true });
    Object.defineProperty(request, UPGRADE_WEBSOCKET, {
      value: () => {
        if (marker) throw new Error("upgradeWebSocket(request) was already called for this request");
        marker = new Response(null, { status: 200 });
        ws.request = request;
        return { socket: ws, response: marker };
      },
    });
    const reply = await invoker.runWeb(invocation, request);
    if (marker && "kind" in reply && reply.kind === "response" && reply.response === marker) {
      ws.accept();
      await ws.closed;
      return;
    }
    await answer(res, reply, invocation, undefined);
  } finally {
    invocation.end();
  }
}
