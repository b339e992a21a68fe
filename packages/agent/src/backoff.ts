/** Exponential backoff with jitter: many agents losing one gateway must not come back in lockstep. */
export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  constructor(private readonly o: BackoffOptions) {}

  /** The next delay: min·2^attempt capped at max, scaled by a random factor in [0.5, 1). */
  next(): number {
    const base = Math.min(this.o.maxMs, this.o.minMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(base * (0.5 + (this.o.random ?? Math.random)() / 2));
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** A sleep that `abort` cuts short (shutdown must not wait out a 30 s backoff). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
