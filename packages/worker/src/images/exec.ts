/**
 * Small process helpers for the image code. Commands are always argv arrays (never a shell), and a
 * failure names the command and the tail of its stderr, so errors say what went wrong.
 */
import { spawn, type SpawnOptions } from "node:child_process";
import type { Writable } from "node:stream";

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    const tail = stderr.trim().split("\n").slice(-5).join("\n");
    super(`${argv.join(" ")} failed (${exitCode === null ? "killed" : `exit ${exitCode}`})${tail ? `: ${tail}` : ""}`);
    this.name = "CommandError";
  }
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each complete line of stdout and stderr (progress output). */
  onLine?: (line: string) => void;
  input?: Buffer | string;
}

/** Runs argv to completion; resolves with stdout, rejects with {@link CommandError}. */
export function run(argv: string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = { cwd: options.cwd, env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] };
    const child = spawn(argv[0]!, argv.slice(1), spawnOptions);
    const out: Buffer[] = [];
    let err = "";
    const lines = lineSplitter(options.onLine);
    child.stdout!.on("data", (chunk: Buffer) => {
      out.push(chunk);
      lines(chunk);
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      // Keep only the tail: debootstrap and tar can be chatty, and we only report the end.
      err = (err + chunk.toString()).slice(-16_384);
      lines(chunk);
    });
    child.on("error", (e) => reject(new CommandError(argv, null, e.message)));
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new CommandError(argv, code, err));
    });
    child.stdin!.on("error", () => {}); // the child may exit before reading its input
    child.stdin!.end(options.input ?? "");
  });
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

/** Starts argv with a writable stdin (for streaming input); `done` rejects with {@link CommandError}. */
export function start(argv: string[]): { stdin: Writable; done: Promise<void>; kill(): void } {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (chunk: Buffer) => (err = (err + chunk.toString()).slice(-16_384)));
  const done = new Promise<void>((resolve, reject) => {
    child.on("error", (e) => reject(new CommandError(argv, null, e.message)));
    child.on("close", (code) => (code === 0 ? resolve() : reject(new CommandError(argv, code, err))));
  });
  return { stdin: child.stdin, done, kill: () => child.kill("SIGKILL") };
}
