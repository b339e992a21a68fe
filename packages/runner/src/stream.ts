/**
 * Streamed answers (runner-protocol.ts, "Streaming"): what the runner sends when an endpoint's
 * handler returns a Response, a ReadableStream (or Node Readable), or an async iterable / generator
 * instead of a JSON value, and what a web app's Response becomes.
 *
 * Backpressure: the next chunk is pulled from the handler only once the socket took the last one
 * (`write` returned true, or after `drain`), so a slow caller pauses the handler at its `yield` and
 * nothing piles up here. Writes made in one turn of the event loop leave as one socket write (Node
 * corks a chunked response until the next tick), so tiny tokens cost little on the wire.
 */
import type { ServerResponse } from "node:http";
import { STREAM_HEADER } from "./constants.js";

/** One pull at a time from what the handler returned; `cancel` ends it early (caller gone). */
interface Source {
  next(): Promise<IteratorResult<unknown>>;
  cancel(reason: unknown): Promise<unknown>;
}

export type Streamable =
  | { kind: "response"; what: string; response: Response }
  | { kind: "bytes" | "events"; what: string; open: () => Source };

/** Hop-by-hop headers of a Response, never sent on (Node frames the body itself). */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", STREAM_HEADER]);

/**
 * A Fetch API Response, also one made by another copy of undici (a bundled polyfill). Duck-typed
 * on purpose: touching the global Response would load Node's fetch on a plain result's first call.
 */
export function isResponse(value: unknown): value is Response {
  const v = value as Partial<Response> | null;
  return typeof v === "object" && v !== null && typeof v.arrayBuffer === "function" && typeof v.status === "number" && typeof v.headers?.get === "function" && "body" in v;
}

function fromReader(stream: ReadableStream): Source {
  const reader = stream.getReader();
  return { next: () => reader.read() as Promise<IteratorResult<unknown>>, cancel: (reason) => reader.cancel(reason) };
}

function fromIterator(it: Iterator<unknown> | AsyncIterator<unknown>): Source {
  return {
    next: async () => it.next(),
    // A generator suspended at its `yield` runs its finally blocks and ends.
    cancel: async () => it.return?.(),
  };
}

/**
 * What kind of stream `value` is, or undefined for a plain (JSON) result. Checked on every result,
 * so plain values cost a few property lookups.
 *
 * @example
 * streamableOf((async function* () { yield "a"; })())?.kind; // "events"
 */
export function streamableOf(value: unknown): Streamable | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  if (isResponse(value)) return { kind: "response", what: "a Response", response: value };
  const v = value as Record<string | symbol, unknown>;
  if (typeof v.getReader === "function") return { kind: "bytes", what: "a ReadableStream", open: () => fromReader(value as ReadableStream) };
  if (typeof v[Symbol.asyncIterator] === "function") {
    const open = () => fromIterator((v[Symbol.asyncIterator] as () => AsyncIterator<unknown>).call(value));
    // A Node Readable is an async iterable of Buffers: bytes, like a ReadableStream.
    return typeof v.pipe === "function" ? { kind: "bytes", what: "a Node Readable", open } : { kind: "events", what: "an async iterable", open };
  }
  if (typeof v.next === "function" && typeof v[Symbol.iterator] === "function") {
    return { kind: "events", what: "a generator", open: () => fromIterator(value as Iterator<unknown>) };
  }
  return undefined;
}

/** Resolves true once `res` drains, false if it closes or `signal` aborts first. */
function drained(res: ServerResponse, signal: AbortSignal): Promise<boolean> {
  if (res.destroyed || signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      signal.removeEventListener("abort", onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    res.on("drain", onDrain);
    res.on("close", onClose);
    signal.addEventListener("abort", onClose);
  });
}

type PumpEnd = { ended: "done" } | { ended: "gone" } | { ended: "error"; error: unknown };

/**
 * A batch this large is written at once; smaller ones wait for the end of the turn. 64 KiB rather
 * than the socket's 16 KiB: each write is a chunk every hop (gateway, tunnel) reads and writes again,
 * and fewer, larger ones relayed 10,000 tokens markedly faster in bench/streaming.bench.mjs.
 */
const BATCH_BYTES = 64 * 1024;

/**
 * Chunks made in one turn of the event loop, written as one: a generator that yields without
 * waiting makes one HTTP chunk (and one read and one write at the gateway) per batch instead of
 * per token. Whatever is pending goes out at the end of the turn, so a token made after a real
 * wait (a model's next step) leaves at once.
 */
class Batcher {
  private parts: (string | Uint8Array)[] = [];
  private size = 0;
  private scheduled = false;

  constructor(private readonly res: ServerResponse) {}

  /** Adds a chunk; false when the socket wants a drain before more. */
  add(chunk: string | Uint8Array): boolean {
    if (chunk.length === 0) return true;
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size >= BATCH_BYTES) return this.flush();
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.res.writableNeedDrain;
  }

  flush(): boolean {
    this.scheduled = false;
    if (this.parts.length === 0 || this.res.destroyed) return !this.res.writableNeedDrain;
    const parts = this.parts;
    this.parts = [];
    this.size = 0;
    const data = parts.length === 1 ? parts[0]! : parts.every((p) => typeof p === "string") ? parts.join("") : Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));
    return this.res.write(data);
  }
}

/**
 * Pulls, encodes and writes until the source ends, fails, or the caller goes (then the source is
 * cancelled). What it wrote is flushed by the time it resolves.
 */
async function pump(res: ServerResponse, source: Source, encode: (item: unknown) => string | Uint8Array, signal: AbortSignal, first?: { value: unknown }): Promise<PumpEnd> {
  const out = new Batcher(res);
  let pending = first;
  for (;;) {
    if (res.destroyed || signal.aborted) {
      await source.cancel(signal.reason ?? new DOMException("the caller closed the connection", "AbortError")).catch(() => undefined);
      return { ended: "gone" };
    }
    let item: unknown;
    if (pending) {
      item = pending.value;
      pending = undefined;
    } else {
      let r: IteratorResult<unknown>;
      try {
        r = await source.next();
      } catch (error) {
        out.flush();
        return { ended: "error", error };
      }
      if (r.done) {
        out.flush();
        return { ended: "done" };
      }
      item = r.value;
    }
    let chunk: string | Uint8Array;
    try {
      chunk = encode(item);
    } catch (error) {
      out.flush();
      await source.cancel(error).catch(() => undefined);
      return { ended: "error", error };
    }
    if (out.add(chunk)) continue;
    // The socket holds enough: send the rest of the batch, then wait for it to drain.
    out.flush();
    await drained(res, signal); // a close or abort is seen at the loop's top, which cancels the source
  }
}

const decoder = new TextDecoder();
const json = (item: unknown): string => JSON.stringify(item instanceof Uint8Array ? decoder.decode(item) : item) ?? "null";

/** One SSE event per item: strings as they are (one `data:` line per line), anything else as JSON. */
function sseEvent(item: unknown): string {
  const text = typeof item === "string" ? item : item instanceof Uint8Array ? decoder.decode(item) : json(item);
  if (!/[\r\n]/.test(text)) return `data: ${text}\n\n`;
  return `${text.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join("")}\n`;
}

const bytesOf = (item: unknown): string | Uint8Array => {
  if (typeof item === "string" || item instanceof Uint8Array) return item;
  if (ArrayBuffer.isView(item)) return new Uint8Array(item.buffer, item.byteOffset, item.byteLength);
  if (item instanceof ArrayBuffer) return new Uint8Array(item);
  throw new TypeError(`a byte stream yielded ${item === null ? "null" : typeof item}; yield strings or Uint8Arrays (or return an async generator to send events)`);
};

/** NDJSON when the caller asks for it (and not for SSE); SSE otherwise, as LLM clients expect. */
export function wantsNdjson(accept: string | undefined): boolean {
  return !!accept && accept.includes("application/x-ndjson") && !accept.includes("text/event-stream");
}

function errorFields(err: unknown): { code: string; message: string } {
  return { code: "HANDLER_ERROR", message: err instanceof Error ? err.message : String(err) };
}

export interface StreamOptions {
  taskId: string;
  /** The caller's Accept header (events: SSE or NDJSON). */
  accept: string | undefined;
  /** The invocation's signal: a cancel or shutdown stops the stream too. */
  signal: AbortSignal;
}

function logFailure(taskId: string, err: unknown): void {
  process.stderr.write(`task ${taskId} failed while streaming: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
}

/** Ends a raw stream that failed after its head went out: the caller sees it cut, not complete. */
function cut(res: ServerResponse, end: PumpEnd, taskId: string): void {
  if (end.ended === "error") {
    logFailure(taskId, end.error);
    res.destroy();
  } else if (end.ended === "gone") res.destroy();
  else res.end();
}

function responseHeaders(response: Response): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (!HOP_BY_HOP.has(name) && name !== "set-cookie") headers[name] = value;
  });
  const cookies = typeof response.headers.getSetCookie === "function" ? response.headers.getSetCookie() : [];
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  headers[STREAM_HEADER] = "response";
  return headers;
}

/**
 * Sends `stream` on `res` and resolves when it is over: sent in full, cut (caller gone, signal
 * aborted, a failure mid-body), or answered 500 (a byte stream that failed before its first chunk).
 * Never rejects.
 */
export async function sendStream(res: ServerResponse, stream: Streamable, o: StreamOptions): Promise<void> {
  if (res.destroyed) {
    // The caller left while the handler ran: end what it returned (a generator's finally runs).
    const reason = new DOMException("the caller closed the connection", "AbortError");
    await (stream.kind === "response" ? stream.response.body?.cancel(reason) : stream.open().cancel(reason))?.catch(() => undefined);
    return;
  }
  if (stream.kind === "response") {
    const { response } = stream;
    res.writeHead(response.status, response.statusText || undefined, responseHeaders(response));
    if (response.body === null) return void res.end();
    cut(res, await pump(res, fromReader(response.body), bytesOf, o.signal), o.taskId);
    return;
  }
  const source = stream.open();
  if (stream.kind === "events") {
    const ndjson = wantsNdjson(o.accept);
    // The head leaves with the first batch of items (the gateway's reply would wait for it anyway),
    // so the gateway's headers timeout is the time to the first item.
    res.writeHead(200, {
      "content-type": ndjson ? "application/x-ndjson" : "text/event-stream; charset=utf-8",
      "cache-control": "no-cache", "x-accel-buffering": "no", [STREAM_HEADER]: "events",
    });
    const end = await pump(res, source, ndjson ? (item) => `${json(item)}\n` : sseEvent, o.signal);
    if (end.ended === "gone") return void res.destroy();
    if (end.ended === "error") {
      // The head went out 200: the failure travels in the stream, as its last event.
      logFailure(o.taskId, end.error);
      const fields = errorFields(end.error);
      res.end(ndjson ? `${JSON.stringify({ error: fields })}\n` : `event: error\ndata: ${JSON.stringify(fields)}\n\n`);
      return;
    }
    res.end();
    return;
  }
  // Bytes: the first chunk says text or binary, and a failure before it is still a plain 500.
  let first: IteratorResult<unknown>;
  try {
    first = await source.next();
    if (!first.done) bytesOf(first.value);
  } catch (err) {
    logFailure(o.taskId, err);
    await source.cancel(err).catch(() => undefined);
    const body = JSON.stringify({ error: { ...errorFields(err), ...(err instanceof Error && { stack: err.stack }) } });
    if (!res.destroyed) res.writeHead(500, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
    return;
  }
  const text = !first.done && typeof first.value === "string";
  res.writeHead(200, { "content-type": text ? "text/plain; charset=utf-8" : "application/octet-stream", [STREAM_HEADER]: "bytes" });
  if (first.done) return void res.end();
  cut(res, await pump(res, source, bytesOf, o.signal, { value: first.value }), o.taskId);
}
