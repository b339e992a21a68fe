/** The machine registry on SQLite: external machines, their tokens, lifecycle and flags. */
import type Database from "better-sqlite3";
import type { MachineMetrics, MachineState } from "@beta9/protocol";
import type { MachineRegistration, MachineRepo, Page, StoredMachine } from "../types.js";
import type { SqliteTokenRepo } from "./identity.js";
import { newId, now } from "./rows.js";

export interface MachineRow {
  id: string; workspace_id: string; pool: string; state: string; hostname: string | null; cpu_millicores: number;
  memory_mib: number; gpus: string; last_keepalive_at: string | null; created_at: string; token_id: string | null;
  os: string | null; arch: string | null; agent_version: string | null; metrics: string | null; cordoned: number; draining: number;
}

export const toStoredMachine = (r: MachineRow): StoredMachine => ({
  id: r.id, workspaceId: r.workspace_id, pool: r.pool, state: r.state as MachineState, hostname: r.hostname,
  cpuMillicores: r.cpu_millicores, memoryMiB: r.memory_mib, gpus: JSON.parse(r.gpus) as StoredMachine["gpus"],
  lastKeepaliveAt: r.last_keepalive_at, createdAt: r.created_at, os: r.os, arch: r.arch, agentVersion: r.agent_version,
  cordoned: r.cordoned === 1, draining: r.draining === 1,
  metrics: r.metrics === null ? null : (JSON.parse(r.metrics) as MachineMetrics), tokenId: r.token_id,
});

export class SqliteMachineRepo implements MachineRepo {
  private readonly insert;
  private readonly byId;
  private readonly byIdAny;
  private readonly byToken;
  private readonly listAll;
  private readonly listPool;
  private readonly registerStmt;
  private readonly keepaliveStmt;
  private readonly flagsStmt;
  private readonly expireStmt;
  private readonly deleteStmt;
  private readonly countStmt;

  constructor(private readonly db: Database.Database, private readonly tokens: SqliteTokenRepo) {
    this.insert = db.prepare(
      `INSERT INTO machine (id, workspace_id, pool, state, token_id, created_at) VALUES (?, ?, ?, 'pending', ?, ?)`,
    );
    this.byId = db.prepare(`SELECT * FROM machine WHERE workspace_id = ? AND id = ?`);
    this.byIdAny = db.prepare(`SELECT * FROM machine WHERE id = ?`);
    this.byToken = db.prepare(`SELECT * FROM machine WHERE token_id = ?`);
    this.listAll = db.prepare(`SELECT * FROM machine WHERE workspace_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?`);
    this.listPool = db.prepare(
      `SELECT * FROM machine WHERE workspace_id = ? AND pool = ? ORDER BY created_at, id LIMIT ? OFFSET ?`,
    );
    // Registering counts as contact: the expiry clock starts from it.
    this.registerStmt = db.prepare(
      `UPDATE machine SET state = 'registered', hostname = ?, os = ?, arch = ?, agent_version = ?, cpu_millicores = ?,
        memory_mib = ?, gpus = ?, last_keepalive_at = ? WHERE id = ? RETURNING *`,
    );
    // A keepalive from an expired machine does not revive it: the agent must register again,
    // so that the gateway learns its (possibly changed) hardware first.
    this.keepaliveStmt = db.prepare(
      `UPDATE machine SET state = 'ready', metrics = ?, last_keepalive_at = ?
        WHERE id = ? AND state IN ('registered', 'ready') RETURNING *`,
    );
    this.flagsStmt = db.prepare(`UPDATE machine SET cordoned = ?, draining = ? WHERE workspace_id = ? AND id = ? RETURNING *`);
    this.expireStmt = db.prepare(
      `UPDATE machine SET state = 'expired' WHERE state IN ('registered', 'ready') AND last_keepalive_at < ? RETURNING *`,
    );
    this.deleteStmt = db.prepare(`DELETE FROM machine WHERE workspace_id = ? AND id = ? RETURNING *`);
    this.countStmt = db.prepare(`SELECT state, COUNT(*) AS n, SUM(cordoned) AS cordoned FROM machine GROUP BY state`);
  }

  async create(workspaceId: string, pool: string) {
    return this.db.transaction(() => {
      const id = newId();
      const token = this.tokens.createSync(workspaceId, "machine", `machine ${id}`);
      this.insert.run(id, workspaceId, pool, token.id, now());
      return { machine: toStoredMachine(this.byIdAny.get(id) as MachineRow), token };
    })();
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as MachineRow | undefined;
    return row && toStoredMachine(row);
  }

  async getByToken(tokenId: string) {
    const row = this.byToken.get(tokenId) as MachineRow | undefined;
    return row && toStoredMachine(row);
  }

  async list(workspaceId: string, page: Page & { pool?: string }) {
    const rows = page.pool === undefined
      ? this.listAll.all(workspaceId, page.limit, page.offset)
      : this.listPool.all(workspaceId, page.pool, page.limit, page.offset);
    return (rows as MachineRow[]).map(toStoredMachine);
  }

  async register(id: string, info: MachineRegistration) {
    const row = this.registerStmt.get(
      info.hostname, info.os, info.arch, info.agentVersion, info.cpuMillicores, info.memoryMiB, JSON.stringify(info.gpus), now(), id,
    ) as MachineRow | undefined;
    return row && toStoredMachine(row);
  }

  async keepalive(id: string, metrics: MachineMetrics) {
    const row = this.keepaliveStmt.get(JSON.stringify(metrics), now(), id) as MachineRow | undefined;
    return row && toStoredMachine(row);
  }

  async setFlags(workspaceId: string, id: string, flags: { cordoned: boolean; draining: boolean }) {
    const row = this.flagsStmt.get(flags.cordoned ? 1 : 0, flags.draining ? 1 : 0, workspaceId, id) as MachineRow | undefined;
    return row && toStoredMachine(row);
  }

  async expireSilent(before: string) {
    return (this.expireStmt.all(before) as MachineRow[]).map(toStoredMachine);
  }

  async counts() {
    const rows = this.countStmt.all() as { state: string; n: number; cordoned: number }[];
    return { states: Object.fromEntries(rows.map((r) => [r.state, r.n])), cordoned: rows.reduce((sum, r) => sum + r.cordoned, 0) };
  }

  /** Revokes the machine's token first: a crash between the two leaves a machine that can be deleted again. */
  async delete(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as MachineRow | undefined;
    if (!row) return undefined;
    if (row.token_id) await this.tokens.revoke(workspaceId, row.token_id);
    const deleted = this.deleteStmt.get(workspaceId, id) as MachineRow | undefined;
    return deleted && toStoredMachine(deleted);
  }
}
