/**
 * One job per key at a time: a call while that key's job runs asks for one more run after it
 * (however many calls came), never a second job beside it, and at most one start per `gapMs`.
 * For work that re-reads a truth (a queue's count in the store) where only the latest reading matters.
 */
export class PerKeyCoalescer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  /** When each key's last run started (across runs: a call right after one ends waits the gap too). */
  private readonly lastStart = new Map<string, number>();

  /** `gapMs`: the least time between the starts of two runs of one key (the extra run waits for it). */
  constructor(private readonly job: (key: string) => Promise<void>, private readonly gapMs = 0) {}

  run(key: string): Promise<void> {
    const current = this.running.get(key);
    if (current) {
      this.again.add(key);
      return current;
    }
    let started = 0;
    const loop = (async () => {
      do {
        const wait = (this.lastStart.get(key) ?? 0) + this.gapMs - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        this.again.delete(key);
        started = Date.now();
        this.lastStart.set(key, started);
        await this.job(key);
      } while (this.again.has(key));
    })().finally(() => {
      this.running.delete(key);
      // Past the gap the start time no longer matters: the map holds only keys run just now
      // (and never drops a later run's start).
      const timer = setTimeout(() => {
        if (this.lastStart.get(key) === started) this.lastStart.delete(key);
      }, this.gapMs);
      timer.unref();
    });
    this.running.set(key, loop);
    return loop;
  }
}
