/**
 * Interactive shells: a process with a PTY in a running container or sandbox
 * (`sandbox.process.pty()`, `openShell()`, and `beta9 shell` on top of them).
 *
 * ```ts
 * const pty = await sb.process.pty({ cols: 120, rows: 40 });
 * pty.write("echo hi\r");
 * for await (const chunk of pty) process.stdout.write(chunk);   // ends when the process exits
 * console.log("exit code", await pty.wait());
 * ```
 *
 * A POST asks the gateway for a one-use ticket (all errors arrive there as ApiErrors: unknown id,
 * another workspace's, not running, too many shells); the session is then a WebSocket with the
 * token in its Authorization header, never in its URL. Frames: @beta9/protocol shell-protocol.ts.
 */
import { Agent, WebSocket } from "undici";
import {
  formatErrorMessage, resizeFrame, shellDataFrames, shellFrame, ShellFrameReader, SHELL_EOF, SHELL_ERROR, SHELL_EXIT,
  SHELL_INPUT, SHELL_SOCKET_PATH, SHELL_STDERR, SHELL_STDOUT, type ShellOpenBody, type ShellTicket,
} from "@beta9/protocol";
import { ApiError } from "./client-support.js";
import { gatewayPoolOptions } from "./client.js";
import { SandboxHttp, type Connection } from "./sandbox-http.js";

export interface PtyOptions {
  cols?: number;
  rows?: number;
  /** argv to run; default /bin/bash where the image has it, else /bin/sh. */
  command?: string[];
  /** Working directory in the container (a sandbox's default: /workspace). */
  cwd?: string;
  /** TERM for the process (default xterm-256color). */
  term?: string;
  /** false: no PTY, plain pipes (stdout and stderr apart); default true. */
  tty?: boolean;
}

/** What to open a shell in. */
export type ShellTarget = { containerId: string } | { sandboxId: string };

/** A chunk queue that is an async iterable; it ends when the session does. */
class Chunks implements AsyncIterable<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  push(chunk: Uint8Array): void {
    this.queue.push(chunk);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/**
 * One shell session. Iterate it (or `output`) for the process's output as bytes; `wait()` resolves
 * to its exit code, or rejects when the session failed (worker gone, container ended, revoked).
 */
export class PtySession implements AsyncIterable<Uint8Array> {
  /** The PTY's output (without a PTY: stdout). */
  readonly output = new Chunks();
  /** Without a PTY: stderr (a PTY merges it into `output`). */
  readonly stderr = new Chunks();
  private readonly exit: Promise<number>;

  /** @internal */
  constructor(private readonly ws: WebSocket, readonly containerId: string) {
    const reader = new ShellFrameReader();
    let code: number | undefined;
    let error: string | undefined;
    this.exit = new Promise<number>((resolve, reject) => {
      ws.addEventListener("message", (event) => {
        let frames;
        try {
          frames = reader.push(new Uint8Array(event.data as ArrayBuffer));
        } catch (err) {
          error = (err as Error).message;
          return ws.close();
        }
        for (const f of frames) {
          if (f.type === SHELL_STDOUT) this.output.push(f.payload);
          else if (f.type === SHELL_STDERR) this.stderr.push(f.payload);
          else if (f.type === SHELL_EXIT && f.payload.length === 4) code = f.payload.readInt32BE(0);
          else if (f.type === SHELL_ERROR) error = f.payload.toString("utf8");
        }
      });
      ws.addEventListener("close", (event) => {
        this.output.end();
        this.stderr.end();
        if (code !== undefined) return resolve(code);
        const reason = error ?? `the connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`;
        reject(new ApiError(502, "SHELL_FAILED", formatErrorMessage("SHELL_FAILED", { reason })));
      });
    });
    this.exit.catch(() => undefined); // a caller that never waits must not see an unhandled rejection
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.output[Symbol.asyncIterator]();
  }

  /** Types into the process (a string is sent as UTF-8; "\r" is Enter on a PTY, "\x03" is Ctrl-C). */
  write(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (const frame of shellDataFrames(SHELL_INPUT, bytes)) this.send(frame);
  }

  /** The terminal's new size (the process gets SIGWINCH). */
  resize(cols: number, rows: number): void {
    this.send(resizeFrame(cols, rows));
  }

  /** No more input: a PTY gets ^D, a pipe is closed. */
  end(): void {
    this.send(shellFrame(SHELL_EOF));
  }

  /** The exit code (128+N when a signal N ended it). */
  wait(): Promise<number> {
    return this.exit;
  }

  /** Hangs up: the process gets SIGHUP; `wait()` rejects unless it had already exited. */
  close(): void {
    this.ws.close(1000, "closed by the client");
  }

  /** Bytes queued locally, not yet sent (for callers that pace large input). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  private send(frame: Uint8Array): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }
}

/** Opens a shell in a running container or sandbox of the connection's workspace. */
export async function openShell(connection: Connection, target: ShellTarget, options: PtyOptions = {}): Promise<PtySession> {
  const http = new SandboxHttp(connection);
  const body: ShellOpenBody = {
    ...(options.command?.length && { command: options.command }), ...(options.tty !== undefined && { tty: options.tty }),
    ...(options.cols !== undefined && { cols: options.cols }), ...(options.rows !== undefined && { rows: options.rows }),
    ...(options.term !== undefined && { term: options.term }), ...(options.cwd !== undefined && { cwd: options.cwd }),
  };
  const path = "containerId" in target ? `/container/${encodeURIComponent(target.containerId)}/shell` : `/sandbox/${encodeURIComponent(target.sandboxId)}/shell`;
  let ticket: ShellTicket;
  try {
    ticket = await http.json<ShellTicket>("POST", path, { json: body });
  } finally {
    await http.close();
  }
  // Below the gateway URL's own path, as every API call is (a gateway behind a path prefix).
  const url = new URL(connection.gateway);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}${SHELL_SOCKET_PATH}/${encodeURIComponent(ticket.ticket)}`;
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const dispatcher = new Agent(gatewayPoolOptions(connection.tlsCa));
  const ws = new WebSocket(url, { headers: connection.token ? { authorization: `Bearer ${connection.token}` } : {}, dispatcher });
  ws.binaryType = "arraybuffer";
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new ApiError(0, "UNREACHABLE", `the gateway at ${connection.gateway} refused or dropped the shell's WebSocket`)), { once: true });
  });
  ws.addEventListener("close", () => void dispatcher.close().catch(() => undefined));
  return new PtySession(ws, ticket.containerId);
}
