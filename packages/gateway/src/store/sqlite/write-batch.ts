/**
 * Group commit for hot writes (task puts, claims, outcomes). Calls made in the same event-loop
 * turn run in one transaction: the pages they share (index leaves, the table's last page) go to
 * the WAL once instead of once per call, and WAL checkpoints, which sync, come that many times
 * less often. Each call still resolves only after its transaction committed, and one call's
 * error (a missing stub) fails that call alone.
 */
import type Database from "better-sqlite3";

interface Pending<I, O> {
  input: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class WriteBatch<I, O> {
  private queue: Pending<I, O>[] = [];
  private scheduled = false;

  constructor(
    private readonly db: Database.Database,
    private readonly apply: (input: I) => O,
  ) {}

  run(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      // After this turn's I/O callbacks: every request read in this turn joins the batch.
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.queue;
    this.queue = [];
    const outcomes: ({ ok: true; value: O } | { ok: false; error: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const item of items) {
          try {
            outcomes.push({ ok: true, value: this.apply(item.input) });
          } catch (error) {
            outcomes.push({ ok: false, error }); // SQLite undid that statement; the others stand
          }
        }
      }).immediate();
    } catch (error) {
      for (const item of items) item.reject(error);
      return;
    }
    items.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }
}
