/** Deployed schedules on SQLite: which stubs fire, and the last tick each one fired (claimed). */
import type Database from "better-sqlite3";
import type { ActiveSchedule, ScheduleRepo } from "../types.js";
import { toStub, type StubRow } from "./rows.js";

export class SqliteScheduleRepo implements ScheduleRepo {
  private readonly claim;
  private readonly last;
  private readonly active;

  constructor(db: Database.Database) {
    // One statement, so the check and the write are atomic even across processes: a second
    // caller with the same (or an older) tick changes no row.
    this.claim = db.prepare(
      `INSERT INTO schedule_tick (stub_id, last_tick) VALUES (?, ?)
       ON CONFLICT(stub_id) DO UPDATE SET last_tick = excluded.last_tick WHERE excluded.last_tick > schedule_tick.last_tick`,
    );
    this.last = db.prepare(`SELECT last_tick FROM schedule_tick WHERE stub_id = ?`);
    this.active = db.prepare(
      `SELECT s.*, MIN(d.created_at) AS deployed_at FROM deployment d JOIN stub s ON s.id = d.stub_id
       WHERE d.stub_type = 'schedule/deployment' AND d.active = 1 AND d.deleted_at IS NULL AND s.type = 'schedule/deployment'
       GROUP BY s.id ORDER BY s.id`,
    );
  }

  async claimTick(stubId: string, tickIso: string) {
    // Normalised, so that the text comparison in SQL is a time comparison.
    return this.claim.run(stubId, new Date(tickIso).toISOString()).changes === 1;
  }

  async lastTick(stubId: string) {
    return (this.last.get(stubId) as { last_tick: string } | undefined)?.last_tick;
  }

  async activeSchedules(): Promise<ActiveSchedule[]> {
    return (this.active.all() as (StubRow & { deployed_at: string })[]).map((r) => ({ ...toStub(r), deployedAt: r.deployed_at }));
  }
}
