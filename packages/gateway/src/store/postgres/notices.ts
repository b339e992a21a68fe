/**
 * NOTIFYs to the other gateways, batched and sent apart from the writes they announce. A NOTIFY
 * inside a write makes its commit take a database-wide lock through the WAL flush, which
 * serialises every notifying commit: measured here, 32 concurrent task puts fell from ~2,500/s to
 * ~600/s. Batched every 20 ms, a gateway sends at most ~50 notices a second per channel, each
 * naming every id since the last (payload `<gateway id> <id> <id>…`, under Postgres's 8,000 bytes).
 * A notice is a hint: it may come late or be lost (the receivers look again periodically).
 */
import type { Db } from "./db.js";

const FLUSH_MS = 20;
const MAX_PAYLOAD = 7900;

export class Notices {
  private readonly pending = new Map<string, Set<string>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: Db, private readonly from: string) {}

  add(channel: string, id: string): void {
    let ids = this.pending.get(channel);
    if (!ids) this.pending.set(channel, (ids = new Set()));
    ids.add(id);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.pending].map(([channel, ids]) => [channel, [...ids]] as const);
    this.pending.clear();
    for (const [channel, ids] of batches) {
      for (const payload of payloads(this.from, ids)) {
        await this.db.run(`SELECT pg_notify($1, $2)`, [channel, payload]).catch(() => undefined);
      }
    }
  }
}

/** `<from> <id> <id>…` strings, each under MAX_PAYLOAD bytes. */
export function payloads(from: string, ids: readonly string[]): string[] {
  const out: string[] = [];
  let current = from;
  for (const id of ids) {
    if (current.length + 1 + id.length > MAX_PAYLOAD && current !== from) {
      out.push(current);
      current = from;
    }
    current += ` ${id}`;
  }
  if (current !== from) out.push(current);
  return out;
}

/** The ids of a notice from another gateway (none from this one's own). */
export function noticeIds(payload: string, self: string): string[] {
  const [from, ...ids] = payload.split(" ");
  return from === self ? [] : ids.filter(Boolean);
}
