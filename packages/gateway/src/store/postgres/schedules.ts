/** Deployed schedules on Postgres: which stubs fire, and the last tick each one fired (claimed). */
import type { ActiveSchedule, ScheduleRepo } from "../types.js";
import { toStub, type StubRow } from "../sqlite/rows.js";
import type { Db } from "./db.js";

export class PostgresScheduleRepo implements ScheduleRepo {
  constructor(private readonly db: Db) {}

  /**
   * One statement, so a tick fires once across gateways: concurrent claims of the same stub
   * queue on its row (or on the insert of its first one), and each re-checks the condition
   * against the committed tick, so only the first claim of a newer tick changes a row.
   */
  async claimTick(stubId: string, tickIso: string) {
    return await this.db.run(
      `INSERT INTO schedule_tick (stub_id, last_tick) VALUES ($1, $2)
       ON CONFLICT (stub_id) DO UPDATE SET last_tick = EXCLUDED.last_tick WHERE EXCLUDED.last_tick > schedule_tick.last_tick`,
      [stubId, new Date(tickIso).toISOString()],
    ) === 1;
  }

  async lastTick(stubId: string) {
    return (await this.db.row<{ last_tick: string }>(`SELECT last_tick FROM schedule_tick WHERE stub_id = $1`, [stubId]))?.last_tick;
  }

  async activeSchedules(): Promise<ActiveSchedule[]> {
    const rows = await this.db.rows<StubRow & { deployed_at: string }>(
      `SELECT s.id, s.workspace_id, s.app_id, s.name, s.type, s.object_id, s.config::text AS config, s.config_hash, s.created_at,
         MIN(d.created_at) AS deployed_at
       FROM deployment d JOIN stub s ON s.id = d.stub_id
       WHERE d.stub_type = 'schedule/deployment' AND d.active AND d.deleted_at IS NULL AND s.type = 'schedule/deployment'
       GROUP BY s.id ORDER BY s.id`,
    );
    return rows.map((r) => ({ ...toStub(r), deployedAt: r.deployed_at }));
  }
}
