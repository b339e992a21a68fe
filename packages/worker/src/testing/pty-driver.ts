/**
 * Drives a program as a user at a terminal would: it runs on a fresh PTY (the shell helper's
 * "term" mode: cooked, echo on, ^C a signal, until the program changes that), the test types into
 * it, resizes it (the program gets SIGWINCH), reads what it prints, and gets its exit code.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { resizeFrame, shellDataFrames, ShellFrameReader, SHELL_INPUT } from "@beta9/protocol";
import { PTY_HELPER } from "../shell/pty-helper.js";
import { DEFAULT_PYTHON } from "../shell/session.js";

export class PtyDriver {
  /** Everything printed so far (escape sequences included). */
  output = "";
  /** The program's exit code (128+N for signal N). */
  readonly exit: Promise<number>;
  private readonly child: ChildProcess;

  constructor(argv: string[], options: { env?: NodeJS.ProcessEnv; cols?: number; rows?: number } = {}) {
    this.child = spawn(DEFAULT_PYTHON, ["-I", "-S", "-c", PTY_HELPER, "term", String(options.cols ?? 100), String(options.rows ?? 30), ...argv], {
      env: options.env ?? process.env, stdio: ["pipe", "pipe", "inherit"],
    });
    const reader = new ShellFrameReader();
    this.child.stdout!.on("data", (chunk: Buffer) => {
      for (const f of reader.push(chunk)) this.output += f.payload.toString("utf8");
    });
    this.child.stdin!.on("error", () => undefined);
    this.exit = new Promise((resolve) => this.child.on("close", (code, signal) => resolve(code ?? 128 + (signal === "SIGKILL" ? 9 : 15))));
  }

  /** Types `text` ("\r" is Enter, "\x03" Ctrl-C). */
  type(text: string): void {
    for (const frame of shellDataFrames(SHELL_INPUT, Buffer.from(text))) this.child.stdin!.write(frame);
  }

  /** The terminal's window changes size. */
  resize(cols: number, rows: number): void {
    this.child.stdin!.write(resizeFrame(cols, rows));
  }

  /**
   * Resolves with the first match of `pattern` in the output after character `from` (default:
   * anywhere); rejects after `limitMs` with the output so far (a bound for a hung test, not a timing check).
   */
  async waitFor(pattern: RegExp, from = 0, limitMs = 60_000): Promise<RegExpExecArray & { end: number }> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const m = pattern.exec(this.output.slice(from));
      if (m) return Object.assign(m, { end: from + m.index + m[0].length });
      if (this.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`no ${pattern} in the output${this.child.exitCode !== null ? ` (the program exited ${this.child.exitCode})` : ""}:\n${JSON.stringify(this.output.slice(from))}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Whether the program still runs. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }
}
