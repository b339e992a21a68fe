/** Secrets on SQLite: names and sealed values only (secrets/vault.ts seals them before they get here). */
import type Database from "better-sqlite3";
import { Beta9Error, type Secret } from "@beta9/protocol";
import type { Page, SealedSecret, SecretRepo } from "../types.js";
import { isUniqueViolation, now } from "./rows.js";

export interface SecretRow { name: string; created_at: string; updated_at: string }

export const toSecret = (r: SecretRow): Secret => ({ name: r.name, createdAt: r.created_at, updatedAt: r.updated_at });

export class SqliteSecretRepo implements SecretRepo {
  private readonly insert;
  private readonly change;
  private readonly remove;
  private readonly byName;
  private readonly listStmt;
  private readonly countStmt;
  private readonly allStmt;
  private readonly resealStmt;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(`INSERT INTO secret (workspace_id, name, sealed, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`);
    this.change = db.prepare(`UPDATE secret SET sealed = ?, updated_at = ? WHERE workspace_id = ? AND name = ?`);
    this.remove = db.prepare(`DELETE FROM secret WHERE workspace_id = ? AND name = ?`);
    this.byName = db.prepare(`SELECT name, created_at, updated_at FROM secret WHERE workspace_id = ? AND name = ?`);
    this.listStmt = db.prepare(`SELECT name, created_at, updated_at FROM secret WHERE workspace_id = ? ORDER BY name LIMIT ? OFFSET ?`);
    this.countStmt = db.prepare(`SELECT COUNT(*) AS n FROM secret WHERE workspace_id = ?`);
    this.allStmt = db.prepare(`SELECT workspace_id, name, sealed FROM secret ORDER BY workspace_id, name`);
    // A key rotation changes no value: updated_at (what users see) stays.
    this.resealStmt = db.prepare(`UPDATE secret SET sealed = ? WHERE workspace_id = ? AND name = ?`);
  }

  async create(workspaceId: string, name: string, sealed: string) {
    const at = now();
    try {
      this.insert.run(workspaceId, name, sealed, at, at);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("SECRET_EXISTS", { name });
      throw err;
    }
    return { name, createdAt: at, updatedAt: at };
  }

  async update(workspaceId: string, name: string, sealed: string) {
    if (this.change.run(sealed, now(), workspaceId, name).changes === 0) return undefined;
    return toSecret(this.byName.get(workspaceId, name) as SecretRow);
  }

  async delete(workspaceId: string, name: string) {
    return this.remove.run(workspaceId, name).changes > 0;
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as SecretRow[]).map(toSecret);
  }

  async count(workspaceId: string) {
    return (this.countStmt.get(workspaceId) as { n: number }).n;
  }

  async sealedAll(): Promise<SealedSecret[]> {
    return (this.allStmt.all() as { workspace_id: string; name: string; sealed: string }[])
      .map((r) => ({ workspaceId: r.workspace_id, name: r.name, sealed: r.sealed }));
  }

  async resealAll(reseal: (secret: SealedSecret) => string): Promise<number> {
    // One IMMEDIATE transaction: the write lock is taken before the read, so no row changes in between.
    return this.db.transaction(() => {
      const rows = (this.allStmt.all() as { workspace_id: string; name: string; sealed: string }[]);
      for (const r of rows) {
        this.resealStmt.run(reseal({ workspaceId: r.workspace_id, name: r.name, sealed: r.sealed }), r.workspace_id, r.name);
      }
      return rows.length;
    }).immediate();
  }
}
