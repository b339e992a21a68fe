/** Workspaces and tokens on SQLite. */
import type Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { Beta9Error, type TokenType, type TokenWithKey, type Workspace } from "@beta9/protocol";
import type { AuthenticatedToken, Page, TokenRepo, WorkspaceRepo } from "../types.js";
import { BoundedMap } from "./read-cache.js";
import {
  hashTokenKey, isUniqueViolation, newId, newTokenKey, now, TOKEN_PREFIX_LENGTH, toToken, toWorkspace,
  type TokenRow, type WorkspaceRow,
} from "./rows.js";

const TOKEN_COLUMNS = "id, workspace_id, type, name, prefix, active, created_at, revoked_at";

export class SqliteTokenRepo implements TokenRepo {
  private readonly insert;
  private readonly byHash;
  private readonly byId;
  private readonly listStmt;
  private readonly revokeStmt;
  private readonly activeAdmins;
  private readonly revocations = new EventEmitter();
  /** Presented key → token: skips hashing and the query on every request after the first. */
  private readonly authCache = new BoundedMap<string, AuthenticatedToken>(10_000);

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(
      `INSERT INTO token (id, workspace_id, key_hash, prefix, type, name, active, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)`,
    );
    this.byHash = db.prepare(`SELECT id, workspace_id, type FROM token WHERE key_hash = ? AND active = 1`);
    this.byId = db.prepare(`SELECT ${TOKEN_COLUMNS} FROM token WHERE workspace_id = ? AND id = ?`);
    this.listStmt = db.prepare(
      `SELECT ${TOKEN_COLUMNS} FROM token WHERE workspace_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?`,
    );
    this.revokeStmt = db.prepare(`UPDATE token SET active = 0, revoked_at = ? WHERE workspace_id = ? AND id = ? AND active = 1`);
    this.activeAdmins = db.prepare(`SELECT COUNT(*) AS n FROM token WHERE type = 'admin' AND active = 1`);
  }

  /** Synchronous core, so that workspace creation can run it inside its own transaction. */
  createSync(workspaceId: string, type: TokenType, name?: string): TokenWithKey {
    const key = newTokenKey();
    const id = newId();
    const createdAt = now();
    const prefix = key.slice(0, TOKEN_PREFIX_LENGTH);
    this.insert.run(id, workspaceId, hashTokenKey(key), prefix, type, name ?? null, createdAt);
    return { id, workspaceId, type, name: name ?? null, prefix, active: true, createdAt, revokedAt: null, key };
  }

  async create(workspaceId: string, type: TokenType, name?: string): Promise<TokenWithKey> {
    return this.createSync(workspaceId, type, name);
  }

  async authenticate(key: string): Promise<AuthenticatedToken | undefined> {
    const cached = this.authCache.get(key);
    if (cached) return cached;
    const row = this.byHash.get(hashTokenKey(key)) as { id: string; workspace_id: string; type: TokenType } | undefined;
    if (!row) return undefined; // unknown keys are not cached: random keys must not fill memory
    const token = Object.freeze({ id: row.id, workspaceId: row.workspace_id, type: row.type });
    this.authCache.set(key, token);
    return token;
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as TokenRow | undefined;
    return row && toToken(row);
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as TokenRow[]).map(toToken);
  }

  /** Calls `listener` with each token id revoked from now on; returns the unsubscribe function. */
  onRevoked(listener: (tokenId: string) => void): () => void {
    this.revocations.on("revoked", listener);
    return () => this.revocations.off("revoked", listener);
  }

  async revoke(workspaceId: string, id: string) {
    return this.db.transaction(() => {
      const row = this.byId.get(workspaceId, id) as TokenRow | undefined;
      if (!row) return undefined;
      if (row.active === 1 && row.type === "admin" && (this.activeAdmins.get() as { n: number }).n <= 1) {
        throw new Beta9Error("CONFLICT", {
          reason: "this is the last active admin token; create another admin token before revoking it",
        });
      }
      const changed = this.revokeStmt.run(now(), workspaceId, id).changes > 0;
      this.authCache.clear(); // revocations are rare; forgetting every key is simplest and safe
      if (changed) queueMicrotask(() => this.revocations.emit("revoked", id));
      return toToken(this.byId.get(workspaceId, id) as TokenRow);
    })();
  }
}

export class SqliteWorkspaceRepo implements WorkspaceRepo {
  private readonly insert;
  private readonly byId;
  private readonly listStmt;
  private readonly count;

  constructor(private readonly db: Database.Database, private readonly tokens: SqliteTokenRepo) {
    this.insert = db.prepare(`INSERT INTO workspace (id, name, signing_key, created_at) VALUES (?, ?, ?, ?)`);
    this.byId = db.prepare(`SELECT id, name, created_at FROM workspace WHERE id = ?`);
    this.listStmt = db.prepare(`SELECT id, name, created_at FROM workspace ORDER BY created_at, id LIMIT ? OFFSET ?`);
    this.count = db.prepare(`SELECT COUNT(*) AS n FROM workspace`);
  }

  private createSync(name: string, firstTokenType: TokenType) {
    const workspace: Workspace = { id: newId(), name, createdAt: now() };
    try {
      this.insert.run(workspace.id, name, randomBytes(32).toString("hex"), workspace.createdAt);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("NAME_TAKEN", { kind: "workspace", name });
      throw err;
    }
    return { workspace, token: this.tokens.createSync(workspace.id, firstTokenType, "first token") };
  }

  async create(name: string, firstTokenType: TokenType) {
    return this.db.transaction(() => this.createSync(name, firstTokenType))();
  }

  async bootstrap(name: string) {
    return this.db.transaction(() => {
      if ((this.count.get() as { n: number }).n > 0) return undefined;
      return this.createSync(name, "admin");
    }).immediate();
  }

  async get(id: string) {
    const row = this.byId.get(id) as WorkspaceRow | undefined;
    return row && toWorkspace(row);
  }

  async list(page: Page) {
    return (this.listStmt.all(page.limit, page.offset) as WorkspaceRow[]).map(toWorkspace);
  }

  async signingKey(id: string) {
    return (this.db.prepare(`SELECT signing_key FROM workspace WHERE id = ?`).get(id) as { signing_key: string } | undefined)?.signing_key;
  }
}
