/**
 * Several gateways (one Postgres behind them, `beta9 gateway --store postgres://…`) and one
 * worker: the worker holds one connection at a time and moves to the next gateway when it loses
 * or cannot reach the one it has. Any gateway adopts a worker's running containers from its hello
 * (as after a gateway restart), and another gateway takes over a dead one's task attempts, so
 * nothing on the worker has to start again. The first URL is the primary: a worker on another one
 * goes back to it once it answers its health check again.
 */
import { request, type Dispatcher } from "undici";
import WebSocket from "ws";
import { API_PREFIX } from "@beta9/protocol";

/** `--gateway` values: one URL, or several separated by commas (or given as a list). Throws what to fix. */
export function parseGatewayUrls(value: string | readonly string[]): string[] {
  const urls = (typeof value === "string" ? value.split(",") : [...value]).map((url) => url.trim()).filter(Boolean);
  if (urls.length === 0) throw new Error("no gateway URL given (--gateway URL[,URL…])");
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`gateway URL ${JSON.stringify(url)} is not a URL (e.g. http://10.0.0.5:1994)`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error(`gateway URL ${url} must start with http:// or https://`);
  }
  const schemes = new Set(urls.map((url) => new URL(url).protocol));
  if (schemes.size > 1) throw new Error(`gateway URLs mix http:// and https:// (${urls.join(", ")}): the token would cross the network in clear to some; give every gateway the same scheme`);
  return [...new Set(urls.map((url) => url.replace(/\/+$/, "")))];
}

/**
 * Which gateway to dial next, and after how long. A lost or refused gateway is left for the next
 * one after the minimum wait; the backoff (jittered, so many workers do not come back in
 * lockstep) grows only once every gateway has failed in a row.
 */
export class GatewayRotation {
  private index = 0;
  private failures = 0;

  constructor(
    readonly urls: readonly string[],
    private readonly minMs = 250,
    private readonly maxMs = 30_000,
  ) {
    if (urls.length === 0) throw new Error("GatewayRotation needs at least one URL");
  }

  get current(): string {
    return this.urls[this.index]!;
  }

  /** Failures in a row, across all gateways (0 after a welcome). */
  get attempts(): number {
    return this.failures;
  }

  /** Back to the first gateway (it answers again), without a failure counted. */
  toFirst(): void {
    this.index = 0;
  }

  /** The connection to `current` was welcomed. */
  connected(): void {
    this.failures = 0;
  }

  /** The connection to `current` ended or never opened: moves on; the delay before dialling it. */
  failed(random: () => number = Math.random): number {
    this.failures += 1;
    this.index = (this.index + 1) % this.urls.length;
    // Each full round of failures doubles the wait: with one URL, every failure does.
    const rounds = Math.floor((this.failures - 1) / this.urls.length);
    return Math.min(this.maxMs, this.minMs * 2 ** rounds) * (0.5 + random() / 2);
  }
}

/**
 * Ends a connection whose gateway went silent (its host or network lost: no reset ever comes, and
 * TCP would take many minutes to give up): pings every `intervalMs`; nothing heard for three
 * intervals terminates it, so the worker moves on. Returns the stop function.
 */
export function watchLiveness(ws: WebSocket, intervalMs: number): () => void {
  let heard = Date.now();
  const alive = (): void => {
    heard = Date.now();
  };
  ws.on("pong", alive);
  ws.on("message", alive);
  const timer = setInterval(() => {
    if (Date.now() - heard > 3 * intervalMs) {
      ws.terminate();
      return;
    }
    if (ws.readyState === WebSocket.OPEN) ws.ping();
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    ws.off("pong", alive);
    ws.off("message", alive);
  };
}

/** While connected elsewhere: asks the first gateway's health every `everyMs`; calls `back()` once it answers 200. */
export function watchPrimary(url: string, dispatcher: Dispatcher | undefined, everyMs: number, back: () => void): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    void request(`${url}${API_PREFIX}/health`, { headersTimeout: 5000, bodyTimeout: 5000, ...(dispatcher && { dispatcher }) })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode === 200 && !stopped) back();
      })
      .catch(() => { /* still down */ });
  }, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
