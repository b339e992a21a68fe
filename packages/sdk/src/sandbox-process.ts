/**
 * A process started by `sb.process.exec`: its stdout and stderr as async iterables of lines that
 * end when the process has exited (nothing is lost, the last partial line included), `wait()`
 * for its exit, and `kill()` for this one process (its children too), never the sandbox.
 */
import type { Dispatcher } from "undici";
import type { SandboxHttp } from "./sandbox-http.js";
import { ApiError } from "./client-support.js";

export interface ExitStatus {
  exitCode: number | null;
  signal: string | null;
}

type Event =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: string }
  | { type: "exit"; exitCode: number | null; signal: string | null }
  | { type: "error"; code?: string; message: string };

/** One output stream: iterate it for lines, or `text()` for everything once the process ends. */
export class OutputStream implements AsyncIterable<string> {
  private readonly chunks: string[] = [];
  private ended = false;
  private error: Error | undefined;
  private waiters: (() => void)[] = [];

  /** @internal */
  push(data: string): void {
    this.chunks.push(data);
    this.notify();
  }

  /** @internal */
  end(error?: Error): void {
    this.ended = true;
    this.error = error;
    this.notify();
  }

  private notify(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Raw chunks as they arrive (split anywhere). */
  async *chunksOf(): AsyncGenerator<string> {
    for (let i = 0; ; i++) {
      while (i >= this.chunks.length) {
        if (this.ended) {
          if (this.error) throw this.error;
          return;
        }
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
      yield this.chunks[i]!;
    }
  }

  /** Lines without their newline; a last line without one is yielded at the end. */
  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    let partial = "";
    for await (const chunk of this.chunksOf()) {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf("\n")) !== -1) {
        yield partial.slice(0, nl);
        partial = partial.slice(nl + 1);
      }
    }
    if (partial.length > 0) yield partial;
  }

  /** Everything the stream carried, once the process has ended. */
  async text(): Promise<string> {
    let all = "";
    for await (const chunk of this.chunksOf()) all += chunk;
    return all;
  }
}

export class SandboxProcess {
  readonly stdout = new OutputStream();
  readonly stderr = new OutputStream();
  private readonly exit: Promise<ExitStatus>;

  private constructor(
    readonly pid: number,
    private readonly http: SandboxHttp,
    private readonly sandboxId: string,
    events: AsyncIterator<Event>,
  ) {
    this.exit = this.pump(events);
    this.exit.catch(() => {}); // surfaced by wait() and the streams
  }

  /** @internal Reads the stream's first event (start, or why it could not start). */
  static async start(http: SandboxHttp, sandboxId: string, res: Dispatcher.ResponseData, what: string): Promise<SandboxProcess> {
    const events = ndjson(res.body);
    const first = await events.next();
    if (first.done) throw new Error(`exec ${what}: the sandbox closed the stream before the process started`);
    if (first.value.type === "error") {
      res.body.destroy();
      // 422 like the daemon's other refusals of a request; the code says which (COMMAND_NOT_FOUND…).
      throw new ApiError(422, first.value.code ?? "START_FAILED", first.value.message);
    }
    if (first.value.type !== "start") throw new Error(`exec ${what}: unexpected first event ${first.value.type}`);
    return new SandboxProcess(first.value.pid, http, sandboxId, events);
  }

  private async pump(events: AsyncIterator<Event>): Promise<ExitStatus> {
    try {
      for (;;) {
        const next = await events.next();
        if (next.done) throw new Error(`the output stream of process ${this.pid} ended before its exit status (was the sandbox terminated?)`);
        const e = next.value;
        if (e.type === "stdout") this.stdout.push(e.data);
        else if (e.type === "stderr") this.stderr.push(e.data);
        else if (e.type === "exit") {
          this.stdout.end();
          this.stderr.end();
          return { exitCode: e.exitCode, signal: e.signal };
        }
      }
    } catch (err) {
      this.stdout.end(err as Error);
      this.stderr.end(err as Error);
      throw err;
    }
  }

  /** Resolves with the exit code (null and a signal when killed) once the output has all arrived. */
  wait(): Promise<ExitStatus> {
    return this.exit;
  }

  /** Signals this process and its children (default SIGKILL); other processes and the sandbox go on. */
  async kill(signal: "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP" = "SIGKILL"): Promise<void> {
    await this.http.json("POST", `/sandbox/${this.sandboxId}/process/${this.pid}/kill`, { json: { signal } });
  }
}

/** Parses an NDJSON body into events. */
async function* ndjson(body: AsyncIterable<Buffer | string>): AsyncGenerator<Event> {
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    buffer += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.length > 0) yield JSON.parse(line) as Event;
    }
  }
  if (buffer.trim().length > 0) yield JSON.parse(buffer) as Event;
}
