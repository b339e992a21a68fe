/**
 * The worker end of a shell session: on `shell.open` it starts the PTY helper (pty-helper.ts)
 * around the runtime's exec command and carries the helper's frames as a tunnel stream back to
 * the gateway (tunnel.ts), so shells work wherever tunnels do: behind NAT, on machines.
 *
 * Gateway → helper: frames are re-checked here (the gateway checked the client's, but nothing
 * crosses a process boundary unchecked) and written to the helper's stdin with backpressure.
 * Helper → gateway: its stdout already holds frames; they go as they come, the helper paused
 * while the tunnel is. Its exit status becomes the session's last frame. The stream ending (client
 * gone, container gone, token revoked) closes the helper's stdin, which hangs the command up; a
 * helper still there after HANGUP_GRACE_MS is killed.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { Duplex } from "node:stream";
import {
  checkClientFrame, exitFrame, shellFrame, ShellFrameReader, SHELL_ERROR, type ShellOpenMessage,
} from "@beta9/protocol";
import type { Logger } from "pino";
import type { Runtime } from "../runtime/types.js";
import { attachTunnel } from "../tunnel.js";
import { PTY_HELPER } from "./pty-helper.js";

const HANGUP_GRACE_MS = 5000;
/** Shells open at once on one worker (each is a python3 and a runc exec). */
export const MAX_WORKER_SHELLS = 64;
const STDERR_KEEP = 4096;

let open = 0;

export function openShells(): number {
  return open;
}

/**
 * The system's python3 rather than whatever PATH finds first: a version manager's shim (pyenv)
 * costs a second per start, the interpreter itself 50 ms.
 */
export const DEFAULT_PYTHON = ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => existsSync(p)) ?? "python3";

/** The argv of the helper for this request (`hostArgv` from the runtime's shellCommand). */
export function helperArgs(message: Pick<ShellOpenMessage, "tty" | "cols" | "rows">, hostArgv: string[]): string[] {
  // -I -S: no user site, no PYTHON* variables, no site import (the helper needs only the standard library).
  return ["-I", "-S", "-c", PTY_HELPER, message.tty ? "tty" : "pipe", String(message.cols), String(message.rows), ...hostArgv];
}

/**
 * Starts the helper and returns the session as a duplex of shell frames (readable: to the client;
 * writable: from it). The duplex ends after the exit (or error) frame.
 */
export function startShellProcess(message: Pick<ShellOpenMessage, "tty" | "cols" | "rows">, hostArgv: string[], python = DEFAULT_PYTHON, release?: () => void): Duplex {
  open += 1;
  let counted = true;
  const uncount = () => {
    if (counted) open -= 1;
    counted = false;
  };
  const child = spawn(python, helperArgs(message, hostArgv), { stdio: ["pipe", "pipe", "pipe"] });
  const reader = new ShellFrameReader();
  let stderr = "";
  let killTimer: NodeJS.Timeout | undefined;
  let finished = false;
  const hangUp = () => {
    if (!child.stdin.destroyed) child.stdin.end();
    killTimer ??= setTimeout(() => child.kill("SIGKILL"), HANGUP_GRACE_MS).unref();
  };
  const duplex = new Duplex({
    highWaterMark: 256 * 1024,
    read() {
      child.stdout.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        return callback(err as Error);
      }
      let ok = true;
      for (const f of frames) {
        const frame = shellFrame(f.type, f.payload);
        const bad = checkClientFrame(frame);
        if (bad) return callback(new Error(`shell stream: ${bad}`));
        if (child.stdin.writable) ok = child.stdin.write(frame);
      }
      // The helper has not taken earlier input: take no more until it has (the tunnel pauses the peer).
      if (!ok) child.stdin.once("drain", () => callback());
      else callback();
    },
    final(callback) {
      hangUp();
      callback();
    },
    destroy(err, callback) {
      hangUp();
      callback(err);
    },
  });
  child.stdin.on("error", () => undefined); // the helper exited first: its input no longer matters
  child.stdout.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) child.stdout.pause();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    if (stderr.length < STDERR_KEEP) stderr += chunk.toString("utf8").slice(0, STDERR_KEEP - stderr.length);
  });
  const finish = (last: Buffer) => {
    if (finished) return;
    finished = true;
    uncount();
    try {
      release?.();
    } catch {
      // what preparing left is the runtime's to clean; the session's outcome stands
    }
    clearTimeout(killTimer);
    if (!duplex.destroyed) {
      duplex.push(last);
      duplex.push(null);
    }
  };
  child.on("error", (err) => {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? `${python} is not installed on this worker (shells need it: apt-get install python3)` : err.message;
    finish(shellFrame(SHELL_ERROR, Buffer.from(why)));
  });
  child.on("close", (code, signal) => {
    if (code === null) return finish(shellFrame(SHELL_ERROR, Buffer.from(`the shell helper was killed (${signal})`)));
    // A helper that failed before its command ran says why on stderr (a Python traceback).
    if (code === 1 && stderr.includes("Traceback")) return finish(shellFrame(SHELL_ERROR, Buffer.from(`the shell helper failed: ${stderr.trim().split("\n").at(-1)}`)));
    finish(exitFrame(code));
  });
  return duplex;
}

/** What a session needs of its worker (its options, and two callbacks). */
export interface ShellHost {
  runtime: Runtime;
  gatewayUrl: string;
  token: string;
  tlsCa?: string;
  logger: Logger;
  /** Whether the container runs here now. */
  running(containerId: string): boolean;
  /** Tells the gateway the stream will not come (`tunnel.failed`). */
  fail(streamId: string, message: string): void;
}

/** Serves one `shell.open`: checks, starts the helper, connects it to the gateway. */
export function openShellSession(host: ShellHost, message: ShellOpenMessage): void {
  const { streamId, containerId } = message;
  if (!host.running(containerId)) return host.fail(streamId, `container ${containerId} is not running on this worker`);
  if (!host.runtime.shellCommand) return host.fail(streamId, `the ${host.runtime.name} runtime cannot open shells`);
  if (open >= MAX_WORKER_SHELLS) return host.fail(streamId, `this worker has ${MAX_WORKER_SHELLS} shells open, the most it allows`);
  let prepared;
  try {
    prepared = host.runtime.shellCommand(containerId, {
      command: message.command, tty: message.tty, env: message.env, ...(message.cwd !== undefined && { cwd: message.cwd }),
    });
  } catch (err) {
    return host.fail(streamId, `cannot prepare the shell: ${(err as Error).message}`);
  }
  if (!prepared) return host.fail(streamId, `container ${containerId} is not running on this worker`);
  const session = startShellProcess(message, prepared.argv, DEFAULT_PYTHON, prepared.release);
  // The session is carried as a tunnel stream, as a dialled container port would be.
  attachTunnel({
    gatewayUrl: host.gatewayUrl, token: host.token, streamId, socket: session, logger: host.logger, ...(host.tlsCa && { tlsCa: host.tlsCa }),
  }).catch((err: unknown) => {
    session.destroy();
    host.fail(streamId, (err as Error).message);
  });
}
