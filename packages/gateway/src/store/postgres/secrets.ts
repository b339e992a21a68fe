/** Secrets on Postgres: names and sealed values only (secrets/vault.ts seals them before they get here). */
import { Beta9Error, type Secret } from "@beta9/protocol";
import type { Page, SealedSecret, SecretRepo } from "../types.js";
import { toSecret, type SecretRow } from "../sqlite/secrets.js";
import { now } from "../sqlite/rows.js";
import { isUniqueViolation, type Db } from "./db.js";

export class PostgresSecretRepo implements SecretRepo {
  constructor(private readonly db: Db) {}

  async create(workspaceId: string, name: string, sealed: string): Promise<Secret> {
    const at = now();
    try {
      await this.db.run(`INSERT INTO secret (workspace_id, name, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`, [workspaceId, name, sealed, at]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("SECRET_EXISTS", { name });
      throw err;
    }
    return { name, createdAt: at, updatedAt: at };
  }

  async update(workspaceId: string, name: string, sealed: string) {
    const row = await this.db.row<SecretRow>(
      `UPDATE secret SET sealed = $1, updated_at = $2 WHERE workspace_id = $3 AND name = $4 RETURNING name, created_at, updated_at`,
      [sealed, now(), workspaceId, name],
    );
    return row && toSecret(row);
  }

  async delete(workspaceId: string, name: string) {
    return await this.db.run(`DELETE FROM secret WHERE workspace_id = $1 AND name = $2`, [workspaceId, name]) > 0;
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<SecretRow>(
      `SELECT name, created_at, updated_at FROM secret WHERE workspace_id = $1 ORDER BY name LIMIT $2 OFFSET $3`, [workspaceId, page.limit, page.offset],
    );
    return rows.map(toSecret);
  }

  async count(workspaceId: string) {
    return (await this.db.row<{ n: number }>(`SELECT COUNT(*) AS n FROM secret WHERE workspace_id = $1`, [workspaceId]))!.n;
  }

  async sealedAll(): Promise<SealedSecret[]> {
    const rows = await this.db.rows<{ workspace_id: string; name: string; sealed: string }>(
      `SELECT workspace_id, name, sealed FROM secret ORDER BY workspace_id, name`,
    );
    return rows.map((r) => ({ workspaceId: r.workspace_id, name: r.name, sealed: r.sealed }));
  }

  async resealAll(reseal: (secret: SealedSecret) => string): Promise<number> {
    return this.db.tx(async (q) => {
      // FOR UPDATE: a gateway writing a secret meanwhile waits for this transaction, never interleaves.
      const rows = await q.rows<{ workspace_id: string; name: string; sealed: string }>(
        `SELECT workspace_id, name, sealed FROM secret ORDER BY workspace_id, name FOR UPDATE`,
      );
      for (const r of rows) {
        const sealed = reseal({ workspaceId: r.workspace_id, name: r.name, sealed: r.sealed });
        // A key rotation changes no value: updated_at (what users see) stays.
        await q.run(`UPDATE secret SET sealed = $1 WHERE workspace_id = $2 AND name = $3`, [sealed, r.workspace_id, r.name]);
      }
      return rows.length;
    });
  }
}
