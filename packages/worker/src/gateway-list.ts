/**
 * Several gateways (one Postgres behind them, `beta9 gateway --store postgres://…`) and one
 * worker: the worker holds one connection at a time and moves to the next gateway when it loses
 * or cannot reach the one it has. Any gateway adopts a worker's running containers from its hello
 * (as after a gateway restart), and another gateway takes over a dead one's task attempts, so
 * nothing on the worker has to start again.
 */

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
  return [...new Set(urls)];
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
