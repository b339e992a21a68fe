/**
 * The sandbox daemon's processes: every exec is a child in its own process group (so kill ends
 * it and whatever it started, and nothing else), its output is streamed to the caller as NDJSON
 * events, and a bounded table remembers it for `list`.
 *
 * Stream events, one JSON object per line:
 *   {"type":"start","pid":123}
 *   {"type":"stdout","data":"…"} / {"type":"stderr","data":"…"}   (UTF-8 text, split anywhere)
 *   {"type":"exit","exitCode":0,"signal":null}                      (always last)
 *   {"type":"error","message":"…"}                                   (could not start; then exit)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { StringDecoder } from "node:string_decoder";
import type { ServerResponse } from "node:http";
import { SandboxOpError } from "./files.js";
import type { ProcessInfo } from "@beta9/protocol";

export type { ProcessInfo };

/** Output runCode keeps at most (stdout and stderr together) before it kills the process. */
export const RUN_OUTPUT_LIMIT = 16 * 1024 * 1024;

export interface RunLimits {
  maxOutputBytes?: number;
  timeoutMs?: number;
  /** Aborts when the caller is gone: the process is killed rather than left running unseen. */
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: string | null;
  /** Why the daemon killed it, if it did. */
  stopped: "output_limit" | "timeout" | "caller_gone" | null;
}

/** SIGKILL to the process group (processes are started detached, each its own group). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

export interface ExecRequest {
  cmd: string;
  args: string[];
  /** Already resolved to a path on this machine. */
  cwd: string;
  env: Record<string, string>;
  stdin?: string;
}

type Event =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: string }
  | { type: "exit"; exitCode: number | null; signal: string | null }
  /** The command could not start; `code` is COMMAND_NOT_FOUND (ENOENT), PERMISSION_DENIED (EACCES) or START_FAILED. */
  | { type: "error"; code: string; message: string };

/** Finished processes kept for `list` (oldest dropped first). */
const KEEP_FINISHED = 200;

export class ProcessTable {
  private readonly procs = new Map<number, { info: ProcessInfo; child: ChildProcess }>();

  constructor(private readonly baseEnv: Record<string, string>, private readonly cwdLabel: (real: string) => string) {}

  list(): ProcessInfo[] {
    return [...this.procs.values()].map((p) => ({ ...p.info }));
  }

  /**
   * Kills every exec'd process group that still runs. In a container its end kills them anyway;
   * with the process runtime they are host processes in groups of their own and would outlive it.
   */
  killAll(): void {
    for (const p of this.procs.values()) {
      if (!p.info.running) continue;
      try {
        process.kill(-p.info.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }

  /** Signals the process group of one exec; never any other process. */
  kill(pid: number, signal: NodeJS.Signals): ProcessInfo {
    const p = this.procs.get(pid);
    if (!p) throw new SandboxOpError(404, "RESOURCE_NOT_FOUND", `No process ${pid} started by exec in this sandbox`);
    if (p.info.running) {
      try {
        process.kill(-pid, signal);
      } catch {
        p.child.kill(signal);
      }
    }
    return { ...p.info };
  }

  /**
   * Starts the command and streams its events to `res` until it exits. Output is paused while
   * the caller does not keep up (backpressure), so a slow reader never makes the daemon buffer
   * without bound; nothing is dropped, the tail included.
   */
  stream(request: ExecRequest, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store", "x-accel-buffering": "no" });
    // A caller that went away must not leave the process blocked on a full pipe: from then on its
    // output is read and dropped (the process runs on; kill it by pid).
    let gone = false;
    const send = (event: Event): boolean => (gone ? true : res.write(`${JSON.stringify(event)}\n`));
    const child = this.start(request);
    let ended = false;
    res.once("close", () => {
      if (ended) return;
      gone = true;
      child.stdout?.resume();
      child.stderr?.resume();
    });
    const finish = (exitCode: number | null, signal: string | null, error?: { code: string; message: string }): void => {
      if (ended) return;
      ended = true;
      if (error !== undefined) send({ type: "error", ...error });
      send({ type: "exit", exitCode, signal });
      res.end();
    };
    child.once("error", (err: NodeJS.ErrnoException) => {
      // As a shell would: 127 for a command that is not there, 126 for one that cannot run.
      const [code, exitCode, what] = err.code === "ENOENT" ? ["COMMAND_NOT_FOUND", 127, "command not found"]
        : err.code === "EACCES" ? ["PERMISSION_DENIED", 126, "permission denied"] : ["START_FAILED", 126, err.message];
      finish(exitCode, null, { code, message: `${request.cmd}: ${what}` });
    });
    if (child.pid === undefined) return;
    send({ type: "start", pid: child.pid });
    const streams = [child.stdout!, child.stderr!];
    for (const [name, stream] of [["stdout", child.stdout!], ["stderr", child.stderr!]] as const) {
      const decoder = new StringDecoder("utf8");
      stream.on("data", (chunk: Buffer) => {
        const data = decoder.write(chunk);
        if (data.length > 0 && !send({ type: name, data }) && !gone) {
          for (const s of streams) s.pause();
          res.once("drain", () => streams.forEach((s) => s.resume()));
        }
      });
      stream.once("end", () => {
        const rest = decoder.end();
        if (rest.length > 0) send({ type: name, data: rest });
      });
    }
    // "close" comes after both pipes ended, so the exit event is always the last one.
    child.once("close", (code, signal) => finish(code, signal));
  }

  /**
   * Runs to completion and collects the output (runCode). Bounded: past `maxOutputBytes` of output
   * or `timeoutMs`, or when `signal` aborts (the caller went away), the process group is killed
   * and the answer says why, so one print loop cannot take the daemon's memory.
   */
  run(request: ExecRequest, limits: RunLimits = {}): Promise<RunResult> {
    const maxOutputBytes = limits.maxOutputBytes ?? RUN_OUTPUT_LIMIT;
    return new Promise((resolve, reject) => {
      const child = this.start(request);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let collected = 0;
      let stopped: RunResult["stopped"] = null;
      const stop = (why: NonNullable<RunResult["stopped"]>) => {
        if (stopped !== null) return;
        stopped = why;
        killGroup(child);
      };
      const collect = (into: Buffer[]) => (chunk: Buffer) => {
        if (stopped !== null) return;
        const room = maxOutputBytes - collected;
        into.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
        collected += Math.min(chunk.length, room);
        if (chunk.length > room) stop("output_limit");
      };
      child.stdout!.on("data", collect(out));
      child.stderr!.on("data", collect(err));
      const timer = limits.timeoutMs !== undefined ? setTimeout(() => stop("timeout"), limits.timeoutMs) : undefined;
      const onAbort = () => stop("caller_gone");
      limits.signal?.addEventListener("abort", onAbort, { once: true });
      if (limits.signal?.aborted) onAbort();
      child.once("error", (e) => reject(new SandboxOpError(422, "INPUT_INVALID", `cannot start ${request.cmd}: ${e.message} (is it installed in the sandbox's image?)`)));
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        limits.signal?.removeEventListener("abort", onAbort);
        resolve({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), exitCode: code, signal, stopped });
      });
    });
  }

  private start(request: ExecRequest): ChildProcess {
    const child = spawn(request.cmd, request.args, {
      cwd: request.cwd, env: { ...this.baseEnv, ...request.env }, detached: true, stdio: ["pipe", "pipe", "pipe"],
    });
    child.stdin!.on("error", () => {}); // a process that does not read its input is not an error
    child.stdin!.end(request.stdin ?? "");
    if (child.pid !== undefined) {
      const info: ProcessInfo = {
        pid: child.pid, cmd: request.cmd, args: request.args, cwd: this.cwdLabel(request.cwd), running: true, exitCode: null,
        signal: null, startedAt: new Date().toISOString(), endedAt: null,
      };
      this.procs.set(child.pid, { info, child });
      child.once("exit", (code, signal) => {
        Object.assign(info, { running: false, exitCode: code, signal, endedAt: new Date().toISOString() });
        this.trim();
      });
    }
    return child;
  }

  private trim(): void {
    const finished = [...this.procs.entries()].filter(([, p]) => !p.info.running);
    for (const [pid] of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.procs.delete(pid);
  }
}
