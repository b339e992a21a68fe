/**
 * A small promise wrapper around child_process.spawn for the host tools the runtimes drive
 * (runc, ip, iptables, mount). Output is collected in full: these tools print little.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Written to the command's stdin (e.g. an `ip -batch -` script); stdin is /dev/null otherwise. */
  input?: string;
}

/** Thrown when a command cannot be spawned or exits non-zero; the message names the command and its stderr. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly result: CommandResult,
  ) {
    const detail = result.stderr.trim() || result.stdout.trim() || `exit ${result.code ?? result.signal}`;
    super(`${command}: ${detail}`);
    this.name = "CommandError";
  }
}

/** Runs `file args…` and resolves with its result whatever the exit status (never rejects on exit codes). */
export function tryRun(file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (error) => {
      // spawn failures (ENOENT for a missing tool) become a failed result, so callers handle one shape.
      resolve({ code: null, signal: null, stdout: "", stderr: `cannot run ${file}: ${error.message}` });
    });
    child.on("close", (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      });
    });
    if (options.input !== undefined && child.stdin) {
      // A tool that exits without reading its stdin would otherwise crash us with an EPIPE 'error' event.
      child.stdin.on("error", () => {});
      child.stdin.end(options.input);
    }
  });
}

/** Runs `file args…`; rejects with a CommandError unless it exits 0. Resolves with stdout. */
export async function run(file: string, args: readonly string[], options: CommandOptions = {}): Promise<string> {
  const result = await tryRun(file, args, options);
  if (result.code !== 0) throw new CommandError([file, ...args].join(" "), result);
  return result.stdout;
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
