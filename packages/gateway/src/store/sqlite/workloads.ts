/** Apps, objects, stubs and deployments on SQLite. */
import type Database from "better-sqlite3";
import { Beta9Error } from "@beta9/protocol";
import type { Deployment, Stub } from "@beta9/protocol";
import type { AppRepo, DeploymentFilter, DeploymentRepo, NewStub, ObjectRepo, Page, StubRepo } from "../types.js";
import { BoundedMap, WorkspaceCache } from "./read-cache.js";
import {
  isUniqueViolation, newId, now, toApp, toDeployment, toObject, toStub,
  type AppRow, type DeploymentRow, type ObjectRow, type StubRow,
} from "./rows.js";

export class SqliteAppRepo implements AppRepo {
  private readonly byName;
  private readonly byId;
  private readonly insert;
  private readonly listStmt;

  constructor(private readonly db: Database.Database) {
    this.byName = db.prepare(`SELECT * FROM app WHERE workspace_id = ? AND name = ?`);
    this.byId = db.prepare(`SELECT * FROM app WHERE workspace_id = ? AND id = ?`);
    this.insert = db.prepare(`INSERT INTO app (id, workspace_id, name, created_at) VALUES (?, ?, ?, ?)`);
    this.listStmt = db.prepare(`SELECT * FROM app WHERE workspace_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?`);
  }

  async getOrCreate(workspaceId: string, name: string) {
    return this.db.transaction(() => {
      const existing = this.byName.get(workspaceId, name) as AppRow | undefined;
      if (existing) return toApp(existing);
      const row: AppRow = { id: newId(), workspace_id: workspaceId, name, created_at: now() };
      this.insert.run(row.id, row.workspace_id, row.name, row.created_at);
      return toApp(row);
    }).immediate();
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as AppRow | undefined;
    return row && toApp(row);
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as AppRow[]).map(toApp);
  }
}

export class SqliteObjectRepo implements ObjectRepo {
  private readonly getStmt;
  private readonly insert;
  private readonly listStmt;
  private readonly bytesStmt;

  constructor(db: Database.Database) {
    this.getStmt = db.prepare(`SELECT hash, size, created_at FROM object WHERE workspace_id = ? AND hash = ?`);
    this.bytesStmt = db.prepare(`SELECT COALESCE(SUM(size), 0) AS bytes FROM object WHERE workspace_id = ?`);
    this.insert = db.prepare(
      `INSERT INTO object (workspace_id, hash, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.listStmt = db.prepare(
      `SELECT hash, size, created_at FROM object WHERE workspace_id = ? ORDER BY created_at, hash LIMIT ? OFFSET ?`,
    );
  }

  async get(workspaceId: string, hash: string) {
    const row = this.getStmt.get(workspaceId, hash) as ObjectRow | undefined;
    return row && toObject(row);
  }

  async put(workspaceId: string, hash: string, size: number) {
    const created = this.insert.run(workspaceId, hash, size, now()).changes === 1;
    return { object: toObject(this.getStmt.get(workspaceId, hash) as ObjectRow), created };
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as ObjectRow[]).map(toObject);
  }

  async totalBytes(workspaceId: string) {
    return (this.bytesStmt.get(workspaceId) as { bytes: number }).bytes;
  }
}

export class SqliteStubRepo implements StubRepo {
  private readonly stubCache = new BoundedMap<string, Stub>(10_000);
  private readonly find;
  private readonly byId;
  private readonly anyById;
  private readonly insert;
  private readonly listStmt;
  private readonly namesStmt;

  constructor(private readonly db: Database.Database) {
    // `+workspace_id`: look the ids up by primary key (the planner would otherwise walk every stub of the workspace).
    this.namesStmt = db.prepare(`SELECT id, name FROM stub WHERE +workspace_id = ? AND id IN (SELECT value FROM json_each(?))`);
    this.find = db.prepare(
      `SELECT * FROM stub WHERE workspace_id = ? AND app_id = ? AND name = ? AND type = ?
         AND object_id IS ? AND config_hash = ?`,
    );
    this.byId = db.prepare(`SELECT * FROM stub WHERE workspace_id = ? AND id = ?`);
    this.anyById = db.prepare(`SELECT * FROM stub WHERE id = ?`);
    this.insert = db.prepare(
      `INSERT INTO stub (id, workspace_id, app_id, name, type, object_id, config, config_hash, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.listStmt = db.prepare(`SELECT * FROM stub WHERE workspace_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?`);
  }

  async getOrCreate(s: NewStub) {
    return this.db.transaction(() => {
      const existing = this.find.get(s.workspaceId, s.appId, s.name, s.type, s.objectId, s.configHash) as StubRow | undefined;
      if (existing) return { stub: toStub(existing), created: false };
      const row: StubRow = {
        id: newId(), workspace_id: s.workspaceId, app_id: s.appId, name: s.name, type: s.type, object_id: s.objectId,
        config: JSON.stringify(s.config), config_hash: s.configHash, created_at: now(),
      };
      this.insert.run(row.id, row.workspace_id, row.app_id, row.name, row.type, row.object_id, row.config, row.config_hash, row.created_at);
      return { stub: toStub(row), created: true };
    }).immediate();
  }

  /** Stubs never change once written, so a stub read is cached for good (bounded). */
  async get(workspaceId: string, id: string) {
    const cached = this.stubCache.get(id);
    if (cached) return cached.workspaceId === workspaceId ? cached : undefined;
    const row = this.byId.get(workspaceId, id) as StubRow | undefined;
    if (!row) return undefined;
    const stub = toStub(row);
    this.stubCache.set(id, stub);
    return stub;
  }

  async getAny(id: string) {
    const row = this.anyById.get(id) as StubRow | undefined;
    return row && toStub(row);
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as StubRow[]).map(toStub);
  }

  async names(workspaceId: string, ids: readonly string[]) {
    if (ids.length === 0) return new Map<string, string>();
    const rows = this.namesStmt.all(workspaceId, JSON.stringify([...new Set(ids)])) as { id: string; name: string }[];
    return new Map(rows.map((r) => [r.id, r.name]));
  }
}

const DEPLOYMENT_COLUMNS = "id, workspace_id, app_id, stub_id, stub_type, name, version, active, created_at, updated_at";

export class SqliteDeploymentRepo implements DeploymentRepo {
  private readonly stubById;
  private readonly maxVersion;
  private readonly typeOfName;
  private readonly insert;
  private readonly byId;
  private readonly byVersion;
  private readonly latest;
  private readonly setActiveStmt;
  private readonly deleteStmt;
  private readonly listStmts = new Map<string, Database.Statement>();
  /** Listing deployments is the hottest read of the API; results are frozen and shared. */
  private readonly listCache = new WorkspaceCache<Deployment[]>();
  private readonly resolveCache = new WorkspaceCache<Deployment>();

  constructor(private readonly db: Database.Database) {
    this.stubById = db.prepare(`SELECT id, app_id, type FROM stub WHERE workspace_id = ? AND id = ?`);
    this.maxVersion = db.prepare(`SELECT MAX(version) AS v FROM deployment WHERE workspace_id = ? AND name = ?`);
    this.typeOfName = db.prepare(
      `SELECT stub_type FROM deployment WHERE workspace_id = ? AND name = ? AND deleted_at IS NULL LIMIT 1`,
    );
    this.insert = db.prepare(
      `INSERT INTO deployment (id, workspace_id, app_id, stub_id, stub_type, name, version, active, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
    );
    this.byId = db.prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = ? AND id = ? AND deleted_at IS NULL`);
    this.byVersion = db.prepare(
      `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = ? AND name = ? AND version = ? AND deleted_at IS NULL`,
    );
    this.latest = db.prepare(
      `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = ? AND name = ? AND active = 1 AND deleted_at IS NULL
       ORDER BY version DESC LIMIT 1`,
    );
    this.setActiveStmt = db.prepare(
      `UPDATE deployment SET active = ?, updated_at = ? WHERE workspace_id = ? AND id = ? AND deleted_at IS NULL`,
    );
    this.deleteStmt = db.prepare(
      `UPDATE deployment SET active = 0, deleted_at = ?, updated_at = ? WHERE workspace_id = ? AND id = ? AND deleted_at IS NULL`,
    );
  }

  async create(workspaceId: string, stubId: string, name: string) {
    return this.db.transaction(() => {
      const stub = this.stubById.get(workspaceId, stubId) as { id: string; app_id: string; type: string } | undefined;
      if (!stub) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "stub", id: stubId });
      if (!stub.type.endsWith("/deployment")) throw new Beta9Error("STUB_NOT_DEPLOYABLE", { id: stubId, type: stub.type });
      const existingType = (this.typeOfName.get(workspaceId, name) as { stub_type: string } | undefined)?.stub_type;
      if (existingType !== undefined && existingType !== stub.type) {
        throw new Beta9Error("CONFLICT", {
          reason: `deployment ${name} is a ${existingType}; deploy this ${stub.type} under another name`,
        });
      }
      const version = ((this.maxVersion.get(workspaceId, name) as { v: number | null }).v ?? 0) + 1;
      const ts = now();
      const row: DeploymentRow = {
        id: newId(), workspace_id: workspaceId, app_id: stub.app_id, stub_id: stub.id, stub_type: stub.type,
        name, version, active: 1, created_at: ts, updated_at: ts,
      };
      try {
        this.insert.run(row.id, row.workspace_id, row.app_id, row.stub_id, row.stub_type, row.name, row.version, ts, ts);
      } catch (err) {
        if (isUniqueViolation(err)) throw new Beta9Error("CONFLICT", { reason: `deployment ${name} v${version} was created concurrently; retry` });
        throw err;
      }
      this.invalidate(workspaceId);
      return toDeployment(row);
    }).immediate();
  }

  private invalidate(workspaceId: string): void {
    this.listCache.invalidate(workspaceId);
    this.resolveCache.invalidate(workspaceId);
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as DeploymentRow | undefined;
    return row && toDeployment(row);
  }

  /** Every invocation resolves its deployment: cached like lists, dropped on any deployment write. */
  async resolve(workspaceId: string, name: string, version: number | "latest") {
    const key = `resolve|${name}|${version}`;
    const cached = this.resolveCache.get(workspaceId, key);
    if (cached) return cached;
    const row = (version === "latest" ? this.latest.get(workspaceId, name) : this.byVersion.get(workspaceId, name, version)) as
      | DeploymentRow
      | undefined;
    return row && this.resolveCache.set(workspaceId, key, Object.freeze(toDeployment(row)));
  }

  /** One prepared statement per filter shape, built on first use. */
  private listStatement(filter: DeploymentFilter): Database.Statement {
    const shape = `${filter.name !== undefined ? "n" : ""}${filter.active !== undefined ? "a" : ""}`;
    let stmt = this.listStmts.get(shape);
    if (!stmt) {
      const where = ["workspace_id = @workspaceId", "deleted_at IS NULL"];
      if (filter.name !== undefined) where.push("name = @name");
      if (filter.active !== undefined) where.push("active = @active");
      stmt = this.db.prepare(
        `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE ${where.join(" AND ")}
         ORDER BY created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`,
      );
      this.listStmts.set(shape, stmt);
    }
    return stmt;
  }

  async list(workspaceId: string, filter: DeploymentFilter) {
    const key = `${filter.limit}|${filter.offset}|${filter.name ?? ""}|${filter.active ?? ""}`;
    const cached = this.listCache.get(workspaceId, key);
    if (cached) return cached;
    const params: Record<string, unknown> = { workspaceId, limit: filter.limit, offset: filter.offset };
    if (filter.name !== undefined) params.name = filter.name;
    if (filter.active !== undefined) params.active = filter.active ? 1 : 0;
    const rows = (this.listStatement(filter).all(params) as DeploymentRow[]).map((r) => Object.freeze(toDeployment(r)));
    return this.listCache.set(workspaceId, key, Object.freeze(rows) as Deployment[]);
  }

  async setActive(workspaceId: string, id: string, active: boolean) {
    if (this.setActiveStmt.run(active ? 1 : 0, now(), workspaceId, id).changes > 0) this.invalidate(workspaceId);
    return this.get(workspaceId, id);
  }

  async delete(workspaceId: string, id: string) {
    const ts = now();
    const deleted = this.deleteStmt.run(ts, ts, workspaceId, id).changes === 1;
    if (deleted) this.invalidate(workspaceId);
    return deleted;
  }
}
