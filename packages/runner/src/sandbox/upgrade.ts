/**
 * WebSocket upgrades to an exposed port: the gateway sends them to the daemon's /proxy route like
 * any request to the port (x-beta9-proxy-port and -path say where), and the daemon dials
 * 127.0.0.1:<port> inside the sandbox, sends the upgrade on, then splices the two sockets. Bytes
 * pass untouched both ways (the server's 101 or its refusal included); the gateway bounds messages.
 */
import type { IncomingMessage } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { PROXY_PATH, PROXY_PATH_HEADER, PROXY_PORT_HEADER } from "../constants.js";

function answer(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

const first = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);
/** Headers of this hop or of the daemon's own protocol, not the server's. */
const DROP = new Set(["authorization", "host", "proxy-connection", "keep-alive", PROXY_PORT_HEADER, PROXY_PATH_HEADER]);

export function proxyPortUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, authorized: (header: string | undefined) => boolean): void {
  socket.on("error", () => socket.destroy());
  const path = new URL(req.url ?? "/", "http://sandbox").pathname;
  if (!authorized(req.headers.authorization)) return answer(socket, 401, "AUTH_TOKEN_INVALID", "the sandbox daemon answers only its gateway");
  if (path !== PROXY_PATH) return answer(socket, 404, "ROUTE_NOT_FOUND", `no WebSocket route ${path} in the sandbox daemon`);
  const port = Number(first(req.headers[PROXY_PORT_HEADER]));
  const target = first(req.headers[PROXY_PATH_HEADER]) ?? "/";
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return answer(socket, 400, "VALIDATION_FAILED", `${PROXY_PORT_HEADER} must be a port number`);
  if (!/^\/[\x21-\x7e]*$/.test(target)) return answer(socket, 400, "VALIDATION_FAILED", `${PROXY_PATH_HEADER} must be an absolute path of visible ASCII`);
  const lines = [`${req.method ?? "GET"} ${target} HTTP/1.1`, `host: 127.0.0.1:${port}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (!DROP.has(name.toLowerCase())) lines.push(`${name}: ${req.rawHeaders[i + 1]!}`);
  }
  const upstream = connect({ host: "127.0.0.1", port, noDelay: true });
  let connected = false;
  upstream.once("connect", () => {
    connected = true;
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on("error", (err) => {
    if (!connected) answer(socket, 502, "UPSTREAM_FAILED", `nothing answers on port ${port} in the sandbox: ${err.message}`);
    else socket.destroy();
  });
  socket.once("close", () => upstream.destroy());
  upstream.once("close", () => socket.end());
}
