/**
 * Interactive shells (`beta9 shell`, `sandbox.process.pty()`): how a client's terminal reaches a
 * process in a container.
 *
 *   client ──POST …/shell──▶ gateway  (checks token, workspace, target; answers a one-use ticket)
 *   client ══WS /api/v1/shell/:ticket══ gateway ══tunnel stream══ worker ──pipes── pty helper ── runc exec -t
 *
 * One frame format on every hop: `[type u8][length u32 BE][payload]`. On the client's WebSocket each
 * binary message from the client is exactly one frame (the gateway checks it before passing it
 * on); frames towards the client may arrive split or batched over messages, so clients read them
 * with {@link ShellFrameReader}. The ticket in the URL is not a credential: the upgrade still needs
 * the same token in the Authorization header, and a ticket is good once, for seconds.
 */
import { Type, type Static } from "@sinclair/typebox";

export const SHELL_SOCKET_PATH = "/api/v1/shell";

/** Client → process. */
export const SHELL_INPUT = 1;
/** Client → process: payload `[cols u16][rows u16]`. */
export const SHELL_RESIZE = 2;
/** Client → process: no more input (a PTY gets ^D, a pipe is closed). */
export const SHELL_EOF = 3;
/** Process → client: output (a PTY's, or a pipe's stdout). */
export const SHELL_STDOUT = 4;
/** Process → client: payload `[code i32]`; the last frame of a session. */
export const SHELL_EXIT = 5;
/** Process/gateway → client: a UTF-8 message; the session ends without an exit code. */
export const SHELL_ERROR = 6;
/** Process → client: a pipe's stderr (sessions without a PTY). */
export const SHELL_STDERR = 7;

const HEADER = 5;
/** Largest payload of one frame; senders split longer data. */
export const MAX_SHELL_FRAME = 64 * 1024;
export const MAX_SHELL_COLS = 1000;
export const MAX_SHELL_ROWS = 1000;

export interface ShellFrame {
  type: number;
  payload: Buffer;
}

export function shellFrame(type: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const header = Buffer.allocUnsafe(HEADER);
  header[0] = type;
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

/** Frames carrying `data`, at most MAX_SHELL_FRAME bytes of it each. */
export function shellDataFrames(type: number, data: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += MAX_SHELL_FRAME) out.push(shellFrame(type, data.subarray(at, at + MAX_SHELL_FRAME)));
  return out;
}

export function resizeFrame(cols: number, rows: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(clampSize(cols, MAX_SHELL_COLS), 0);
  payload.writeUInt16BE(clampSize(rows, MAX_SHELL_ROWS), 2);
  return shellFrame(SHELL_RESIZE, payload);
}

export function exitFrame(code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeInt32BE(code, 0);
  return shellFrame(SHELL_EXIT, payload);
}

function clampSize(n: number, max: number): number {
  return Number.isInteger(n) ? Math.min(max, Math.max(1, n)) : 80;
}

/**
 * Whether one frame a client sent is acceptable: an input type, a length that matches, a resize
 * of sane size. Anything else ends the session (a client is not trusted to frame correctly).
 */
export function checkClientFrame(message: Buffer): string | undefined {
  if (message.length < HEADER) return "a frame shorter than its header";
  const type = message[0]!;
  const length = message.readUInt32BE(1);
  if (length !== message.length - HEADER) return "a frame whose length is not its message's";
  if (length > MAX_SHELL_FRAME) return `a frame over ${MAX_SHELL_FRAME} bytes`;
  if (type === SHELL_INPUT) return undefined;
  if (type === SHELL_EOF) return length === 0 ? undefined : "an EOF frame with a payload";
  if (type === SHELL_RESIZE) {
    if (length !== 4) return "a resize frame that is not 4 bytes";
    const cols = message.readUInt16BE(HEADER);
    const rows = message.readUInt16BE(HEADER + 2);
    return cols >= 1 && cols <= MAX_SHELL_COLS && rows >= 1 && rows <= MAX_SHELL_ROWS ? undefined : "a resize outside 1..1000";
  }
  return `a frame of type ${type}, which clients may not send`;
}

/** Reassembles frames from a byte stream; a frame over the limit is an error (the stream is dropped). */
export class ShellFrameReader {
  private buffer = Buffer.alloc(0);

  constructor(private readonly maxPayload = MAX_SHELL_FRAME) {}

  push(chunk: Uint8Array): ShellFrame[] {
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
    const frames: ShellFrame[] = [];
    let at = 0;
    while (at + HEADER <= this.buffer.length) {
      const length = this.buffer.readUInt32BE(at + 1);
      if (length > this.maxPayload) throw new Error(`a shell frame of ${length} bytes (at most ${this.maxPayload})`);
      if (at + HEADER + length > this.buffer.length) break;
      frames.push({ type: this.buffer[at]!, payload: this.buffer.subarray(at + HEADER, at + HEADER + length) });
      at += HEADER + length;
    }
    this.buffer = this.buffer.subarray(at);
    return frames;
  }
}

/** What the client asks for when it opens a shell (the body of POST …/shell). */
export const ShellOpenBodySchema = Type.Object({
  /** argv; empty or absent: /bin/bash if the container has it, else /bin/sh. */
  command: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { maxItems: 256 })),
  /** A PTY (default true); false: plain pipes, stdout and stderr apart. */
  tty: Type.Optional(Type.Boolean()),
  cols: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SHELL_COLS })),
  rows: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SHELL_ROWS })),
  /** TERM for the process (default xterm-256color with a PTY). */
  term: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9._+-]{1,64}$" })),
  /** Working directory inside the container (default: the container's own). */
  cwd: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: "^/" })),
}, { additionalProperties: false });
export type ShellOpenBody = Static<typeof ShellOpenBodySchema>;

export const ShellTicketSchema = Type.Object({
  /** Open `${SHELL_SOCKET_PATH}/${ticket}` with the same token within `expiresInSeconds`. */
  ticket: Type.String(),
  containerId: Type.String(),
  expiresInSeconds: Type.Integer(),
});
export type ShellTicket = Static<typeof ShellTicketSchema>;

/** The gateway asks a worker to start a shell process and stream it back on tunnel stream `streamId`. */
export interface ShellOpenMessage {
  type: "shell.open";
  streamId: string;
  containerId: string;
  command: string[];
  tty: boolean;
  cols: number;
  rows: number;
  env: Record<string, string>;
  cwd?: string;
}

/** The command a shell runs when none is given: bash where the image has it. */
export const DEFAULT_SHELL_COMMAND = ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash; fi; exec /bin/sh"];
