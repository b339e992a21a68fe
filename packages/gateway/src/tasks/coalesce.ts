/**
 * One job per key at a time: a call while that key's job runs asks for one more run after it
 * (however many calls came), never a second job beside it. For work that re-reads a truth (a
 * queue's count in the store) where only the latest reading matters.
 */
export class PerKeyCoalescer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();

  constructor(private readonly job: (key: string) => Promise<void>) {}

  run(key: string): Promise<void> {
    const current = this.running.get(key);
    if (current) {
      this.again.add(key);
      return current;
    }
    const loop = (async () => {
      do {
        this.again.delete(key);
        await this.job(key);
      } while (this.again.has(key));
    })().finally(() => this.running.delete(key));
    this.running.set(key, loop);
    return loop;
  }
}
