/**
 * One job per key at a time: a call while that key's job runs asks for one more run after it
 * (however many calls came), never a second job beside it, and at most one start per `gapMs`.
 * For work that re-reads a truth (a queue's count in the store) where only the latest reading matters.
 */
export class PerKeyCoalescer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();

  /** `gapMs`: the least time between the starts of two runs of one key (the extra run waits for it). */
  constructor(private readonly job: (key: string) => Promise<void>, private readonly gapMs = 0) {}

  run(key: string): Promise<void> {
    const current = this.running.get(key);
    if (current) {
      this.again.add(key);
      return current;
    }
    const loop = (async () => {
      let started = 0;
      do {
        const wait = started + this.gapMs - Date.now();
        if (started > 0 && wait > 0) await new Promise((r) => setTimeout(r, wait));
        this.again.delete(key);
        started = Date.now();
        await this.job(key);
      } while (this.again.has(key));
    })().finally(() => this.running.delete(key));
    this.running.set(key, loop);
    return loop;
  }
}
