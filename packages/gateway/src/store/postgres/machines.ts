/** The machine registry on Postgres: external machines, their tokens, lifecycle and flags. */
import type { MachineMetrics } from "@beta9/protocol";
import type { MachineRegistration, MachineRepo, Page, StoredMachine } from "../types.js";
import { toStoredMachine, type MachineRow } from "../sqlite/machines.js";
import { newId, now } from "../sqlite/rows.js";
import type { Db } from "./db.js";
import type { PostgresTokenRepo } from "./identity.js";

/** Machine rows in the SQLite row shape (JSON as text, flags as 0/1). */
const MACHINE_COLUMNS = `id, workspace_id, pool, state, hostname, cpu_millicores, memory_mib, gpus::text AS gpus, last_keepalive_at, created_at,
  token_id, os, arch, agent_version, metrics::text AS metrics, cordoned::int AS cordoned, draining::int AS draining`;

export class PostgresMachineRepo implements MachineRepo {
  constructor(private readonly db: Db, private readonly tokens: PostgresTokenRepo) {}

  create(workspaceId: string, pool: string) {
    return this.db.tx(async (q) => {
      const id = newId();
      const token = await this.tokens.createOn(q, workspaceId, "machine", `machine ${id}`);
      const row = await q.row<MachineRow>(
        `INSERT INTO machine (id, workspace_id, pool, state, token_id, created_at) VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING ${MACHINE_COLUMNS}`,
        [id, workspaceId, pool, token.id, now()],
      );
      return { machine: toStoredMachine(row!), token };
    });
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<MachineRow>(`SELECT ${MACHINE_COLUMNS} FROM machine WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    return row && toStoredMachine(row);
  }

  async getByToken(tokenId: string) {
    const row = await this.db.row<MachineRow>(`SELECT ${MACHINE_COLUMNS} FROM machine WHERE token_id = $1`, [tokenId]);
    return row && toStoredMachine(row);
  }

  async list(workspaceId: string, page: Page & { pool?: string }) {
    const rows = page.pool === undefined
      ? await this.db.rows<MachineRow>(`SELECT ${MACHINE_COLUMNS} FROM machine WHERE workspace_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3`,
        [workspaceId, page.limit, page.offset])
      : await this.db.rows<MachineRow>(`SELECT ${MACHINE_COLUMNS} FROM machine WHERE workspace_id = $1 AND pool = $2 ORDER BY created_at, id LIMIT $3 OFFSET $4`,
        [workspaceId, page.pool, page.limit, page.offset]);
    return rows.map(toStoredMachine);
  }

  /** Registering counts as contact: the expiry clock starts from it. */
  async register(id: string, info: MachineRegistration) {
    const row = await this.db.row<MachineRow>(
      `UPDATE machine SET state = 'registered', hostname = $1, os = $2, arch = $3, agent_version = $4, cpu_millicores = $5,
        memory_mib = $6, gpus = $7, last_keepalive_at = $8 WHERE id = $9 RETURNING ${MACHINE_COLUMNS}`,
      [info.hostname, info.os, info.arch, info.agentVersion, info.cpuMillicores, info.memoryMiB, JSON.stringify(info.gpus), now(), id],
    );
    return row && toStoredMachine(row);
  }

  /** An expired machine is not revived by a keepalive: it must register again (its hardware may have changed). */
  async keepalive(id: string, metrics: MachineMetrics) {
    const row = await this.db.row<MachineRow>(
      `UPDATE machine SET state = 'ready', metrics = $1, last_keepalive_at = $2 WHERE id = $3 AND state IN ('registered', 'ready') RETURNING ${MACHINE_COLUMNS}`,
      [JSON.stringify(metrics), now(), id],
    );
    return row && toStoredMachine(row);
  }

  async setFlags(workspaceId: string, id: string, flags: { cordoned: boolean; draining: boolean }) {
    const row = await this.db.row<MachineRow>(
      `UPDATE machine SET cordoned = $1, draining = $2 WHERE workspace_id = $3 AND id = $4 RETURNING ${MACHINE_COLUMNS}`,
      [flags.cordoned, flags.draining, workspaceId, id],
    );
    return row && toStoredMachine(row);
  }

  async expireSilent(before: string) {
    const rows = await this.db.rows<MachineRow>(
      `UPDATE machine SET state = 'expired' WHERE state IN ('registered', 'ready') AND last_keepalive_at < $1 RETURNING ${MACHINE_COLUMNS}`, [before],
    );
    return rows.map(toStoredMachine);
  }

  async counts() {
    const rows = await this.db.rows<{ state: string; n: number; cordoned: number }>(
      `SELECT state, COUNT(*) AS n, COUNT(*) FILTER (WHERE cordoned) AS cordoned FROM machine GROUP BY state`,
    );
    return { states: Object.fromEntries(rows.map((r) => [r.state, r.n])), cordoned: rows.reduce((sum, r) => sum + r.cordoned, 0) };
  }

  /** Revokes the machine's token first: a crash between the two leaves a machine that can be deleted again. */
  async delete(workspaceId: string, id: string) {
    const row = await this.db.row<MachineRow>(`SELECT ${MACHINE_COLUMNS} FROM machine WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    if (!row) return undefined;
    if (row.token_id) await this.tokens.revoke(workspaceId, row.token_id);
    const deleted = await this.db.row<MachineRow>(`DELETE FROM machine WHERE workspace_id = $1 AND id = $2 RETURNING ${MACHINE_COLUMNS}`, [workspaceId, id]);
    return deleted && toStoredMachine(deleted);
  }
}
