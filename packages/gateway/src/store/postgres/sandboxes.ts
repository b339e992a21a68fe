/**
 * Sandboxes on Postgres. The row outlives the gateway process, so a sandbox whose creator died
 * still ends at its expiry after a restart: the reaper reads `expires_at`, not a timer.
 */
import type { Page, SandboxConfig, SandboxEndReason, SandboxRepo } from "../types.js";
import { toRecord, type SandboxRow } from "../sqlite/sandboxes.js";
import { now } from "../sqlite/rows.js";
import type { Db } from "./db.js";

/** Sandbox rows in the SQLite row shape (the config as JSON text). */
const SANDBOX_COLUMNS = "id, workspace_id, container_id, state, reason, config::text AS config, expires_at, created_at, ended_at";

export class PostgresSandboxRepo implements SandboxRepo {
  constructor(private readonly db: Db) {}

  async create(input: { id: string; workspaceId: string; containerId: string; config: SandboxConfig; expiresAt: string | null }) {
    const row = await this.db.row<SandboxRow>(
      `INSERT INTO sandbox (id, workspace_id, container_id, state, config, expires_at, created_at) VALUES ($1, $2, $3, 'PENDING', $4, $5, $6)
       RETURNING ${SANDBOX_COLUMNS}`,
      [input.id, input.workspaceId, input.containerId, JSON.stringify(input.config), input.expiresAt, now()],
    );
    return toRecord(row!);
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<SandboxRow>(`SELECT ${SANDBOX_COLUMNS} FROM sandbox WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    return row && toRecord(row);
  }

  async getAny(id: string) {
    const row = await this.db.row<SandboxRow>(`SELECT ${SANDBOX_COLUMNS} FROM sandbox WHERE id = $1`, [id]);
    return row && toRecord(row);
  }

  async list(workspaceId: string, page: Page & { active?: boolean }) {
    const active = page.active ? "AND state != 'TERMINATED'" : "";
    const rows = await this.db.rows<SandboxRow>(
      `SELECT ${SANDBOX_COLUMNS} FROM sandbox WHERE workspace_id = $1 ${active} ORDER BY created_at DESC, id LIMIT $2 OFFSET $3`,
      [workspaceId, page.limit, page.offset],
    );
    return rows.map(toRecord);
  }

  // States only move forward: a late report never revives an ended sandbox.
  async markRunning(id: string) {
    return await this.db.run(`UPDATE sandbox SET state = 'RUNNING' WHERE id = $1 AND state = 'PENDING'`, [id]) === 1;
  }

  async markTerminated(id: string, reason: SandboxEndReason) {
    return await this.db.run(`UPDATE sandbox SET state = 'TERMINATED', reason = $1, ended_at = $2 WHERE id = $3 AND state != 'TERMINATED'`,
      [reason, now(), id]) === 1;
  }

  async setExpiry(id: string, expiresAt: string | null) {
    return await this.db.run(`UPDATE sandbox SET expires_at = $1 WHERE id = $2 AND state != 'TERMINATED'`, [expiresAt, id]) === 1;
  }

  async setConfig(id: string, config: SandboxConfig) {
    return await this.db.run(`UPDATE sandbox SET config = $1 WHERE id = $2 AND state != 'TERMINATED'`, [JSON.stringify(config), id]) === 1;
  }

  async expired(at: string) {
    const rows = await this.db.rows<SandboxRow>(
      `SELECT ${SANDBOX_COLUMNS} FROM sandbox WHERE state != 'TERMINATED' AND expires_at IS NOT NULL AND expires_at <= $1`, [at],
    );
    return rows.map(toRecord);
  }

  async live() {
    return (await this.db.rows<SandboxRow>(`SELECT ${SANDBOX_COLUMNS} FROM sandbox WHERE state != 'TERMINATED' ORDER BY created_at, id`)).map(toRecord);
  }
}
