/**
 * Workspaces and tokens on Postgres. Unlike the SQLite store, `authenticate` reads the database on
 * every call (no key cache): another gateway may have revoked the token a moment ago, and only the
 * database knows. Revocations reach the other gateways' open sockets through NOTIFY.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { Beta9Error, type TokenType, type TokenWithKey, type Workspace } from "@beta9/protocol";
import type { AuthenticatedToken, Page, TokenRepo, WorkspaceRepo } from "../types.js";
import {
  hashTokenKey, newId, newTokenKey, now, TOKEN_PREFIX_LENGTH, toToken, toWorkspace, type TokenRow, type WorkspaceRow,
} from "../sqlite/rows.js";
import { isUniqueViolation, LOCK, type Db, type Queryable } from "./db.js";

/** Rows are read in the SQLite store's shapes (flags as 0/1), so both share one row → entity mapping. */
export const TOKEN_COLUMNS = "id, workspace_id, type, name, prefix, active::int AS active, created_at, revoked_at";
export const TOKEN_REVOKED_CHANNEL = "beta9_token_revoked";

export class PostgresTokenRepo implements TokenRepo {
  private readonly revocations = new EventEmitter();

  /** `instanceId` tells this store's own notifications apart from other gateways'. */
  constructor(private readonly db: Db, private readonly instanceId: string) {}

  /** Inserts on `q`, so that workspace and machine creation run it inside their own transaction. */
  async createOn(q: Queryable, workspaceId: string, type: TokenType, name?: string): Promise<TokenWithKey> {
    const key = newTokenKey();
    const id = newId();
    const createdAt = now();
    const prefix = key.slice(0, TOKEN_PREFIX_LENGTH);
    await q.run(
      `INSERT INTO token (id, workspace_id, key_hash, prefix, type, name, active, created_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7)`,
      [id, workspaceId, hashTokenKey(key), prefix, type, name ?? null, createdAt],
    );
    return { id, workspaceId, type, name: name ?? null, prefix, active: true, createdAt, revokedAt: null, key };
  }

  create(workspaceId: string, type: TokenType, name?: string): Promise<TokenWithKey> {
    return this.createOn(this.db, workspaceId, type, name);
  }

  async authenticate(key: string): Promise<AuthenticatedToken | undefined> {
    const row = await this.db.row<{ id: string; workspace_id: string; type: TokenType }>(
      `SELECT id, workspace_id, type FROM token WHERE key_hash = $1 AND active`, [hashTokenKey(key)],
    );
    return row && Object.freeze({ id: row.id, workspaceId: row.workspace_id, type: row.type });
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM token WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    return row && toToken(row);
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<TokenRow>(
      `SELECT ${TOKEN_COLUMNS} FROM token WHERE workspace_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3`, [workspaceId, page.limit, page.offset],
    );
    return rows.map(toToken);
  }

  onRevoked(listener: (tokenId: string) => void): () => void {
    this.revocations.on("revoked", listener);
    return () => this.revocations.off("revoked", listener);
  }

  /** A NOTIFY payload `<instance> <token id>`; another instance's revocation is announced here. */
  notified(payload: string): void {
    const [from, tokenId] = payload.split(" ");
    if (from !== this.instanceId && tokenId) this.revocations.emit("revoked", tokenId);
  }

  async revoke(workspaceId: string, id: string) {
    const { token, changed } = await this.db.tx(async (q) => {
      // Revocations take turns cluster-wide, so two gateways never both pass the last-admin check.
      await q.run("SELECT pg_advisory_xact_lock($1, 0)", [LOCK.revoke]);
      const row = await q.row<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM token WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
      if (!row) return { token: undefined, changed: false };
      if (row.active === 1 && row.type === "admin") {
        const admins = await q.row<{ n: number }>(`SELECT COUNT(*) AS n FROM token WHERE type = 'admin' AND active`);
        if ((admins?.n ?? 0) <= 1) {
          throw new Beta9Error("CONFLICT", {
            reason: "this is the last active admin token; create another admin token before revoking it",
          });
        }
      }
      const updated = await q.row<TokenRow>(
        `UPDATE token SET active = FALSE, revoked_at = $1 WHERE workspace_id = $2 AND id = $3 AND active RETURNING ${TOKEN_COLUMNS}`,
        [now(), workspaceId, id],
      );
      // Delivered to every listening gateway when (and only if) this transaction commits.
      if (updated) await q.run("SELECT pg_notify($1, $2)", [TOKEN_REVOKED_CHANNEL, `${this.instanceId} ${id}`]);
      return { token: toToken(updated ?? row), changed: updated !== undefined };
    });
    if (changed) queueMicrotask(() => this.revocations.emit("revoked", id));
    return token;
  }
}

export class PostgresWorkspaceRepo implements WorkspaceRepo {
  constructor(private readonly db: Db, private readonly tokens: PostgresTokenRepo) {}

  private async createOn(q: Queryable, name: string, firstTokenType: TokenType) {
    const workspace: Workspace = { id: newId(), name, createdAt: now() };
    try {
      await q.run(`INSERT INTO workspace (id, name, signing_key, created_at) VALUES ($1, $2, $3, $4)`,
        [workspace.id, name, randomBytes(32).toString("hex"), workspace.createdAt]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("NAME_TAKEN", { kind: "workspace", name });
      throw err;
    }
    return { workspace, token: await this.tokens.createOn(q, workspace.id, firstTokenType, "first token") };
  }

  create(name: string, firstTokenType: TokenType) {
    return this.db.tx((q) => this.createOn(q, name, firstTokenType));
  }

  /** Gateways starting together on an empty database: the lock lets exactly one create the first workspace. */
  bootstrap(name: string) {
    return this.db.tx(async (q) => {
      await q.run("SELECT pg_advisory_xact_lock($1, 0)", [LOCK.bootstrap]);
      if (await q.row(`SELECT 1 FROM workspace LIMIT 1`)) return undefined;
      return this.createOn(q, name, "admin");
    });
  }

  async get(id: string) {
    const row = await this.db.row<WorkspaceRow>(`SELECT id, name, created_at FROM workspace WHERE id = $1`, [id]);
    return row && toWorkspace(row);
  }

  async list(page: Page) {
    const rows = await this.db.rows<WorkspaceRow>(`SELECT id, name, created_at FROM workspace ORDER BY created_at, id LIMIT $1 OFFSET $2`, [page.limit, page.offset]);
    return rows.map(toWorkspace);
  }

  async signingKey(id: string) {
    return (await this.db.row<{ signing_key: string }>(`SELECT signing_key FROM workspace WHERE id = $1`, [id]))?.signing_key;
  }
}
