/**
 * Group commit for one gateway's hot writes on Postgres (task puts and ends): the writes that
 * arrive while one statement is under way go together in the next, one round trip for all of
 * them. With one write at a time it is one statement per write, sent at once; under load each
 * statement carries what queued meanwhile (bounded by `maxBatch`). Each write gets its own
 * answer; a failed statement fails the writes it carried (each caller sees the error).
 */
export class GroupCommit<I, O> {
  private queue: { item: I; resolve: (out: O) => void; reject: (err: unknown) => void }[] = [];
  private running = false;

  /** `write` runs one statement for `items` and answers each item's outcome, in order. */
  constructor(private readonly write: (items: I[]) => Promise<O[]>, private readonly maxBatch = 500) {}

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const outs = await this.write(batch.map((b) => b.item));
          batch.forEach((b, i) => b.resolve(outs[i]!));
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
