/**
 * Group commit for hot writes (task puts, claims, outcomes). Calls made in the same event-loop
 * turn run in one transaction, whichever WriteBatch of the database they came through (a put, a
 * claim and an outcome of one turn share it): the pages they share (index leaves, the table's last
 * page) go to the WAL once instead of once per call, one commit instead of one per kind, and WAL
 * checkpoints, which sync, come that many times less often. Each call still resolves only after
 * its transaction committed, and one call's error (a missing stub) fails that call alone.
 */
import type Database from "better-sqlite3";

interface Pending {
  apply: (input: never) => unknown;
  input: unknown;
  resolve: (value: never) => void;
  reject: (error: unknown) => void;
}

/** The calls of one database waiting for the end of this turn. */
class Group {
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly flushNow = () => this.flush();
  /** One transaction (its BEGIN and COMMIT prepared once) that applies every call. */
  private readonly applyAll: Database.Transaction<(items: Pending[]) => Outcome[]>;

  constructor(db: Database.Database) {
    this.applyAll = db.transaction((items: Pending[]) => items.map((item): Outcome => {
      try {
        return { ok: true, value: item.apply(item.input as never) };
      } catch (error) {
        return { ok: false, error }; // SQLite undid that statement; the others stand
      }
    }));
  }

  add(item: Pending): void {
    this.queue.push(item);
    if (this.scheduled) return;
    this.scheduled = true;
    // After this turn's I/O callbacks: every request read in this turn joins the batch.
    setImmediate(this.flushNow);
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.queue;
    this.queue = [];
    let outcomes: Outcome[];
    try {
      outcomes = this.applyAll.immediate(items);
    } catch (error) {
      for (const item of items) item.reject(error);
      return;
    }
    for (let i = 0; i < items.length; i++) {
      const outcome = outcomes[i]!;
      if (outcome.ok) items[i]!.resolve(outcome.value as never);
      else items[i]!.reject(outcome.error);
    }
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

const groups = new WeakMap<Database.Database, Group>();

export class WriteBatch<I, O> {
  private readonly group: Group;

  constructor(
    db: Database.Database,
    private readonly apply: (input: I) => O,
  ) {
    let group = groups.get(db);
    if (!group) groups.set(db, (group = new Group(db)));
    this.group = group;
  }

  run(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.group.add({ apply: this.apply as (input: never) => unknown, input, resolve: resolve as (value: never) => void, reject });
    });
  }
}
