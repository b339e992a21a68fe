/**
 * Splits a byte stream into lines for a LogSink: one call per line without the newline, a final
 * partial line flushed at the end. Shared by both runtimes so they frame logs identically.
 */
import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";
import type { LogSink } from "./types.js";

/** A line longer than this is cut into pieces, so one runaway line cannot grow memory without bound. */
export const MAX_LINE_CHARS = 64 * 1024;

export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private pending = "";

  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    let start = 0;
    let newline = this.pending.indexOf("\n", start);
    while (newline !== -1) {
      this.emit(this.pending.slice(start, newline));
      start = newline + 1;
      newline = this.pending.indexOf("\n", start);
    }
    this.pending = this.pending.slice(start);
    while (this.pending.length > MAX_LINE_CHARS) {
      this.emit(this.pending.slice(0, MAX_LINE_CHARS));
      this.pending = this.pending.slice(MAX_LINE_CHARS);
    }
  }

  /** Emits what is left (a last line without a trailing newline). Call once, at end of stream. */
  flush(): void {
    this.pending += this.decoder.end();
    if (this.pending.length > 0) this.emit(this.pending);
    this.pending = "";
  }
}

/** Feeds a readable into `emit` line by line; resolves once the stream ended and the last line was flushed. */
export function pipeLines(stream: Readable, emit: (line: string) => void): Promise<void> {
  const splitter = new LineSplitter(emit);
  return new Promise((resolve) => {
    stream.on("data", (chunk: Buffer) => splitter.push(chunk));
    // 'close' also covers streams destroyed without 'end'; flush exactly once.
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      splitter.flush();
      resolve();
    };
    stream.on("end", finish);
    stream.on("close", finish);
    stream.on("error", finish);
  });
}

/**
 * Wraps a caller's LogSink so that a sink that throws cannot crash the worker: it would throw
 * inside a stream 'data' handler, where nothing can catch it. The line is dropped instead.
 */
export function guardSink(sink: LogSink): LogSink {
  return (stream, line) => {
    try {
      sink(stream, line);
    } catch {
      // a broken sink loses this line; the container keeps running
    }
  };
}
