/**
 * Sandboxes on SQLite. The row outlives the gateway process, so a sandbox whose creator died
 * still ends at its expiry after a restart: the reaper reads `expires_at`, not a timer.
 */
import type Database from "better-sqlite3";
import type { Page, SandboxConfig, SandboxEndReason, SandboxRecord, SandboxRepo, SandboxState } from "../types.js";
import { now } from "./rows.js";

export interface SandboxRow {
  id: string; workspace_id: string; container_id: string; state: string; reason: string | null; config: string;
  expires_at: string | null; created_at: string; ended_at: string | null;
}

export const toRecord = (r: SandboxRow): SandboxRecord => ({
  id: r.id, workspaceId: r.workspace_id, containerId: r.container_id, state: r.state as SandboxState,
  reason: r.reason as SandboxEndReason | null, config: JSON.parse(r.config) as SandboxConfig, expiresAt: r.expires_at,
  createdAt: r.created_at, endedAt: r.ended_at,
});

export class SqliteSandboxRepo implements SandboxRepo {
  private readonly insert;
  private readonly byId;
  private readonly inWorkspace;
  private readonly listAll;
  private readonly listActive;
  private readonly running;
  private readonly end;
  private readonly expiry;
  private readonly configStmt;
  private readonly expiredStmt;
  private readonly liveStmt;

  constructor(db: Database.Database) {
    this.insert = db.prepare(
      `INSERT INTO sandbox (id, workspace_id, container_id, state, config, expires_at, created_at) VALUES (?, ?, ?, 'PENDING', ?, ?, ?)`,
    );
    this.byId = db.prepare(`SELECT * FROM sandbox WHERE id = ?`);
    this.inWorkspace = db.prepare(`SELECT * FROM sandbox WHERE workspace_id = ? AND id = ?`);
    this.listAll = db.prepare(`SELECT * FROM sandbox WHERE workspace_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?`);
    this.listActive = db.prepare(
      `SELECT * FROM sandbox WHERE workspace_id = ? AND state != 'TERMINATED' ORDER BY created_at DESC, id LIMIT ? OFFSET ?`,
    );
    // States only move forward: a late report never revives an ended sandbox.
    this.running = db.prepare(`UPDATE sandbox SET state = 'RUNNING' WHERE id = ? AND state = 'PENDING'`);
    this.end = db.prepare(`UPDATE sandbox SET state = 'TERMINATED', reason = ?, ended_at = ? WHERE id = ? AND state != 'TERMINATED'`);
    this.expiry = db.prepare(`UPDATE sandbox SET expires_at = ? WHERE id = ? AND state != 'TERMINATED'`);
    this.configStmt = db.prepare(`UPDATE sandbox SET config = ? WHERE id = ? AND state != 'TERMINATED'`);
    this.expiredStmt = db.prepare(`SELECT * FROM sandbox WHERE state != 'TERMINATED' AND expires_at IS NOT NULL AND expires_at <= ?`);
    this.liveStmt = db.prepare(`SELECT * FROM sandbox WHERE state != 'TERMINATED' ORDER BY created_at`);
  }

  async create(input: { id: string; workspaceId: string; containerId: string; config: SandboxConfig; expiresAt: string | null }) {
    const createdAt = now();
    this.insert.run(input.id, input.workspaceId, input.containerId, JSON.stringify(input.config), input.expiresAt, createdAt);
    return toRecord(this.byId.get(input.id) as SandboxRow);
  }

  async get(workspaceId: string, id: string) {
    const row = this.inWorkspace.get(workspaceId, id) as SandboxRow | undefined;
    return row && toRecord(row);
  }

  async getAny(id: string) {
    const row = this.byId.get(id) as SandboxRow | undefined;
    return row && toRecord(row);
  }

  async list(workspaceId: string, page: Page & { active?: boolean }) {
    const stmt = page.active ? this.listActive : this.listAll;
    return (stmt.all(workspaceId, page.limit, page.offset) as SandboxRow[]).map(toRecord);
  }

  async markRunning(id: string) {
    return this.running.run(id).changes === 1;
  }

  async markTerminated(id: string, reason: SandboxEndReason) {
    return this.end.run(reason, now(), id).changes === 1;
  }

  async setExpiry(id: string, expiresAt: string | null) {
    return this.expiry.run(expiresAt, id).changes === 1;
  }

  async setConfig(id: string, config: SandboxConfig) {
    return this.configStmt.run(JSON.stringify(config), id).changes === 1;
  }

  async expired(at: string) {
    return (this.expiredStmt.all(at) as SandboxRow[]).map(toRecord);
  }

  async live() {
    return (this.liveStmt.all() as SandboxRow[]).map(toRecord);
  }
}
