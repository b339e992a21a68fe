/**
 * The worker's one way to run a host tool (runc, ip, iptables, mount, tar, mksquashfs,
 * debootstrap…): always an argv (never a shell), stdout collected in full (these tools print
 * little, or what they print is the answer), stderr kept to its tail, and a failure that names the
 * command and what it said.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type { Writable } from "node:stream";

export interface CommandResult {
  /** null when the command was killed by a signal or could not be started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Written to the command's stdin (an `ip -batch -` script, a tar stream…); stdin is /dev/null otherwise. */
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each non-empty line of stdout and stderr (progress output). */
  onLine?: (line: string) => void;
}

/** Of a chatty tool (debootstrap, tar) only the end says what went wrong. */
const STDERR_TAIL = 16_384;

/** A command that could not be started or did not exit 0: the message names it and the tail of its stderr. */
export class CommandError extends Error {
  override name = "CommandError";
  readonly command: string;
  constructor(
    readonly argv: readonly string[],
    readonly result: CommandResult,
  ) {
    const tail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-5).join("\n");
    const how = result.code !== null ? `exit ${result.code}` : result.signal !== null ? `killed by ${result.signal}` : "not started";
    const command = argv.join(" ");
    super(`${command} failed (${how})${tail ? `: ${tail}` : ""}`);
    this.command = command;
  }

  get exitCode(): number | null {
    return this.result.code;
  }

  get stderr(): string {
    return this.result.stderr;
  }
}

/** A failed result of a command that never ran (spawn's error), so callers handle one shape. */
export function notStarted(file: string, error: Error): CommandResult {
  return { code: null, signal: null, stdout: "", stderr: `cannot run ${file}: ${error.message}` };
}

/** Runs `file args…` and resolves with its result whatever the exit status (never rejects). */
export function tryRun(file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      cwd: options.cwd, env: options.env ?? process.env, stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    let stderr = "";
    const lines = lineSplitter(options.onLine);
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout.push(chunk);
      lines(chunk);
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL);
      lines(chunk);
    });
    let settled = false;
    child.on("error", (error) => {
      if (settled) return;
      settled = true;
      resolve(notStarted(file, error));
    });
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString("utf8"), stderr });
    });
    if (options.input !== undefined && child.stdin) {
      // A tool that exits without reading its stdin would otherwise crash us with an EPIPE 'error' event.
      child.stdin.on("error", () => {});
      child.stdin.end(options.input);
    }
  });
}

/** Runs `file args…`; rejects with a {@link CommandError} unless it exits 0. Resolves with stdout. */
export async function run(file: string, args: readonly string[], options: CommandOptions = {}): Promise<string> {
  const result = await tryRun(file, args, options);
  if (result.code !== 0) throw new CommandError([file, ...args], result);
  return result.stdout;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** The argv errors name, when the one started is a wrapper (unshare … tar …). */
  shownAs?: readonly string[];
}

/** Starts `file args…` with a writable stdin (streaming input); `done` rejects with a {@link CommandError}. */
export function start(file: string, args: readonly string[], options: StartOptions = {}): { stdin: Writable; done: Promise<void>; kill(): void } {
  const child = spawn(file, args, { stdio: ["pipe", "ignore", "pipe"], env: options.env ?? process.env });
  const argv = options.shownAs ?? [file, ...args];
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL)));
  child.stdin.on("error", () => {}); // the command may exit (failing) before reading everything
  const done = new Promise<void>((resolve, reject) => {
    let settled = false;
    child.on("error", (e) => {
      if (!settled) reject(new CommandError(argv, notStarted(file, e)));
      settled = true;
    });
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      if (code === 0) resolve();
      else reject(new CommandError(argv, { code, signal, stdout: "", stderr }));
    });
  });
  return { stdin: child.stdin, done, kill: () => child.kill("SIGKILL") };
}

function lineSplitter(onLine?: (line: string) => void): (chunk: Buffer) => void {
  if (!onLine) return () => {};
  let pending = "";
  return (chunk) => {
    pending += chunk.toString();
    const parts = pending.split(/\r?\n|\r/);
    pending = parts.pop() ?? "";
    for (const line of parts) if (line.trim() !== "") onLine(line);
  };
}

/** The path of an executable on PATH (or in the sbin dirs a non-login shell may lack), if any. */
export function findExecutable(name: string, extraDirs = ["/usr/sbin", "/usr/local/sbin", "/sbin"]): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter), ...extraDirs]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return undefined;
}
