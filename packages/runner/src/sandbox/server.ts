/**
 * The sandbox daemon's HTTP surface (only the gateway calls it; the container port is on the
 * worker's private bridge). Errors use the gateway's catalogue codes, so the gateway forwards
 * them unchanged.
 *
 *   GET    /health
 *   POST   /exec              {cmd, args?, cwd?, env?, stdin?} → NDJSON stream (see processes.ts)
 *   POST   /run-code          {code, language: "python"|"javascript", timeout?} → {result, stdout, stderr, exitCode,
 *                              stopped?: "output_limit"|"timeout"} (output capped at 16 MiB)
 *   GET    /process           → {items: ProcessInfo[]}
 *   POST   /process/:pid/kill {signal?} → ProcessInfo
 *   GET    /fs/file?path=     → the bytes;  PUT /fs/file?path=[&mode=644] ← the bytes
 *   GET    /fs/list?path=  GET /fs/stat?path=  POST /fs/mkdir?path=  DELETE /fs?path=[&recursive=true]
 *   ANY    /proxy             → http://127.0.0.1:<x-beta9-proxy-port><x-beta9-proxy-path> inside the
 *                              sandbox (exposed ports; never in the URL, so no caller path can reach
 *                              the routes above), so a port needs no address of its own: it works through worker tunnels, with
 *                              the process runtime, and for servers that listen on localhost only
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { timingSafeEqual } from "node:crypto";
import { constants } from "node:os";
import { BodyTooLargeError, readBody, sendError, sendJson } from "../http.js";
import { SandboxFiles, SandboxOpError } from "./files.js";
import { ProcessTable, RUN_OUTPUT_LIMIT } from "./processes.js";
import { PROXY_PATH, PROXY_PATH_HEADER, PROXY_PORT_HEADER } from "../constants.js";
import type { Duplex } from "node:stream";
import { proxyPortUpgrade } from "./upgrade.js";

/** One request header's value (the first, if repeated). */
function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export interface DaemonOptions {
  /** "/" in an isolated container; a directory of the host with the process runtime. */
  root: string;
  /** argv prefix that runs node (the runner's own) for JavaScript. */
  nodeArgv: string[];
  /** Environment every process starts with (the request's env goes over it). */
  env: Record<string, string>;
  /**
   * The Bearer the gateway sends. Other containers share the worker's bridge, so without it one
   * sandbox could drive another's daemon.
   */
  secret?: string;
}

const JSON_LIMIT = 8 * 1024 * 1024;
const SIGNALS = new Set(["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT"]);

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const text = (await readBody(req, JSON_LIMIT)).toString("utf8");
  let value: unknown;
  try {
    value = text === "" ? {} : JSON.parse(text);
  } catch (err) {
    throw new SandboxOpError(400, "INVALID_JSON", `The request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new SandboxOpError(422, "VALIDATION_FAILED", "body must be an object");
  return value as Record<string, unknown>;
}

function stringRecord(value: unknown, name: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw new SandboxOpError(422, "VALIDATION_FAILED", `${name} must be an object of strings`);
  }
  return value as Record<string, string>;
}

/** Pipes the request to a server in the sandbox and its answer back, untouched but for hop headers. */
function forwardToPort(req: IncomingMessage, res: ServerResponse, port: number, path: string): void {
  const headers = { ...req.headers };
  for (const name of ["authorization", "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", PROXY_PORT_HEADER, PROXY_PATH_HEADER]) delete headers[name];
  headers.host = `127.0.0.1:${port}`;
  const upstream = httpRequest({ host: "127.0.0.1", port, method: req.method, path, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on("error", (err) => {
    if (res.headersSent) return void res.destroy(err);
    sendError(res, 502, "UPSTREAM_FAILED", `nothing answers on port ${port} in the sandbox: ${err.message}`);
  });
  req.pipe(upstream);
}

export function createSandboxServer(options: DaemonOptions): Server & { killAll(): void } {
  const files = new SandboxFiles(options.root);
  const expected = options.secret === undefined ? undefined : Buffer.from(`Bearer ${options.secret}`);
  const authorized = (header: string | undefined): boolean => {
    if (expected === undefined) return true;
    const given = Buffer.from(header ?? "");
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
  const table = new ProcessTable(options.env, (real) => (options.root === "/" ? real : real.slice(options.root.length) || "/"));

  const cwdOf = (value: unknown): Promise<string> => files.directory(value ?? ".");

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sandbox");
    const path = url.pathname;
    const q = (name: string) => url.searchParams.get(name) ?? undefined;
    const method = req.method ?? "GET";

    if (method === "GET" && path === "/health") return sendJson(res, 200, { status: "ok" });
    if (!authorized(req.headers.authorization)) return sendError(res, 401, "AUTH_TOKEN_INVALID", "the sandbox daemon answers only its gateway");
    if (path === PROXY_PATH) {
      const port = Number(header(req, PROXY_PORT_HEADER));
      const target = header(req, PROXY_PATH_HEADER) ?? "/";
      if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new SandboxOpError(400, "VALIDATION_FAILED", `${PROXY_PORT_HEADER} must be a port number`);
      if (!/^\/[\x21-\x7e]*$/.test(target)) throw new SandboxOpError(400, "VALIDATION_FAILED", `${PROXY_PATH_HEADER} must be an absolute path of visible ASCII`);
      return forwardToPort(req, res, port, target);
    }
    if (method === "POST" && path === "/exec") {
      const body = await jsonBody(req);
      if (typeof body.cmd !== "string" || body.cmd.length === 0) throw new SandboxOpError(422, "VALIDATION_FAILED", "cmd must be a non-empty string");
      const args = body.args ?? [];
      if (!Array.isArray(args) || args.some((a) => typeof a !== "string")) throw new SandboxOpError(422, "VALIDATION_FAILED", "args must be an array of strings");
      if (body.stdin !== undefined && typeof body.stdin !== "string") throw new SandboxOpError(422, "VALIDATION_FAILED", "stdin must be a string");
      return table.stream({ cmd: body.cmd, args: args as string[], cwd: await cwdOf(body.cwd), env: stringRecord(body.env, "env"), ...(body.stdin !== undefined && { stdin: body.stdin as string }) }, res);
    }
    if (method === "POST" && path === "/run-code") {
      const body = await jsonBody(req);
      if (typeof body.code !== "string") throw new SandboxOpError(422, "VALIDATION_FAILED", "code must be a string");
      const language = body.language ?? "python";
      if (language !== "python" && language !== "javascript") throw new SandboxOpError(422, "VALIDATION_FAILED", "language must be python or javascript");
      const [cmd, ...prefix] = language === "python" ? ["python3"] : options.nodeArgv;
      const args = language === "python" ? ["-"] : [...prefix, "--input-type=module", "-"];
      if (body.timeout !== undefined && (typeof body.timeout !== "number" || !(body.timeout > 0) || body.timeout > 86_400)) {
        throw new SandboxOpError(422, "VALIDATION_FAILED", "timeout must be a number of seconds from 0 to 86400");
      }
      // The caller leaving (client gone, gateway gave up) ends the run instead of leaving it unseen.
      const gone = new AbortController();
      res.once("close", () => { if (!res.writableFinished) gone.abort(); });
      const out = await table.run({ cmd: cmd!, args, cwd: await cwdOf(body.cwd), env: stringRecord(body.env, "env"), stdin: body.code }, {
        signal: gone.signal, ...(typeof body.timeout === "number" && { timeoutMs: body.timeout * 1000 }),
      });
      const note = out.stopped === "output_limit" ? `\n[beta9: output passed ${RUN_OUTPUT_LIMIT / 1_048_576} MiB; the process was killed]\n`
        : out.stopped === "timeout" ? `\n[beta9: the code ran past its timeout of ${body.timeout as number} s; the process was killed]\n` : "";
      return sendJson(res, 200, {
        result: out.stdout.replace(/\r?\n$/, ""), stdout: out.stdout, stderr: out.stderr + note,
        exitCode: out.exitCode ?? (out.signal ? 128 + (constants.signals[out.signal as NodeJS.Signals] ?? 0) : null), signal: out.signal,
        ...(out.stopped !== null && { stopped: out.stopped }),
      });
    }
    if (method === "GET" && path === "/process") return sendJson(res, 200, { items: table.list() });
    const kill = /^\/process\/(\d+)\/kill$/.exec(path);
    if (method === "POST" && kill) {
      const body = await jsonBody(req);
      const signal = body.signal ?? "SIGKILL";
      if (typeof signal !== "string" || !SIGNALS.has(signal)) throw new SandboxOpError(422, "VALIDATION_FAILED", `signal must be one of ${[...SIGNALS].join(", ")}`);
      return sendJson(res, 200, table.kill(Number(kill[1]), signal as NodeJS.Signals));
    }
    if (path === "/fs/file" && method === "GET") {
      const file = await files.open(q("path"));
      // /proc and /sys files say size 0 and still have content: those go chunked.
      res.writeHead(200, { "content-type": "application/octet-stream", ...(file.size > 0 && { "content-length": file.size }) });
      await pipeline(file.stream, res);
      return;
    }
    if (path === "/fs/file" && method === "PUT") {
      const mode = q("mode");
      if (mode !== undefined && !/^[0-7]{3,4}$/.test(mode)) throw new SandboxOpError(422, "VALIDATION_FAILED", "mode must be octal, like 644");
      return sendJson(res, 200, await files.write(q("path"), req, mode === undefined ? undefined : Number.parseInt(mode, 8)));
    }
    if (path === "/fs/list" && method === "GET") return sendJson(res, 200, { items: await files.list(q("path")) });
    if (path === "/fs/stat" && method === "GET") return sendJson(res, 200, await files.stat(q("path")));
    if (path === "/fs/mkdir" && method === "POST") return sendJson(res, 200, await files.mkdir(q("path")));
    if (path === "/fs" && method === "DELETE") {
      await files.remove(q("path"), q("recursive") === "true");
      res.writeHead(204).end();
      return;
    }
    sendError(res, 404, "ROUTE_NOT_FOUND", `No route ${method} ${path} in the sandbox daemon`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy(err as Error);
        return;
      }
      if (err instanceof SandboxOpError) return sendError(res, err.status, err.code, err.message);
      if (err instanceof BodyTooLargeError) return sendError(res, 413, "BODY_TOO_LARGE", err.message);
      const e = err as NodeJS.ErrnoException;
      if (e.code === "EACCES" || e.code === "EPERM" || e.code === "EROFS") return sendError(res, 403, "AUTH_FORBIDDEN", `the sandbox refused: ${e.message}`);
      if (e.code === "ENOSPC" || e.code === "EDQUOT") return sendError(res, 503, "UNAVAILABLE", `the sandbox is out of space: ${e.message}`);
      sendError(res, 500, "INTERNAL", `sandbox daemon: ${e.message}`);
    });
  });
  // WebSockets to exposed ports (upgrade.ts).
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => proxyPortUpgrade(req, socket, head, authorized));
  return Object.assign(server, { killAll: () => table.killAll() });
}
