/**
 * Apps, objects, stubs and deployments on Postgres. Deployment lists and resolutions read the
 * database every time: the SQLite store caches them because it is their only writer, while here
 * another gateway may deploy, stop or delete at any moment. Stubs are the exception: a stub row
 * never changes and is never deleted, so a stub once read stays correct in every gateway.
 */
import { Beta9Error, type Stub } from "@beta9/protocol";
import type { AppRepo, DeploymentFilter, DeploymentRepo, NewStub, ObjectRepo, Page, StubRepo } from "../types.js";
import { BoundedMap } from "../sqlite/read-cache.js";
import {
  newId, now, toApp, toDeployment, toObject, toStub, type AppRow, type DeploymentRow, type ObjectRow, type StubRow,
} from "../sqlite/rows.js";
import { isUniqueViolation, LOCK, type Db } from "./db.js";

export class PostgresAppRepo implements AppRepo {
  constructor(private readonly db: Db) {}

  private byName(workspaceId: string, name: string) {
    return this.db.row<AppRow>(`SELECT * FROM app WHERE workspace_id = $1 AND name = $2`, [workspaceId, name]);
  }

  /** Read, else insert; a concurrent insert by another gateway wins the conflict and is read back. */
  async getOrCreate(workspaceId: string, name: string) {
    const existing = await this.byName(workspaceId, name);
    if (existing) return toApp(existing);
    const inserted = await this.db.row<AppRow>(
      `INSERT INTO app (id, workspace_id, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, name) DO NOTHING RETURNING *`,
      [newId(), workspaceId, name, now()],
    );
    return toApp(inserted ?? (await this.byName(workspaceId, name))!);
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<AppRow>(`SELECT * FROM app WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    return row && toApp(row);
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<AppRow>(`SELECT * FROM app WHERE workspace_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3`,
      [workspaceId, page.limit, page.offset]);
    return rows.map(toApp);
  }
}

export class PostgresObjectRepo implements ObjectRepo {
  constructor(private readonly db: Db) {}

  async get(workspaceId: string, hash: string) {
    const row = await this.db.row<ObjectRow>(`SELECT hash, size, created_at FROM object WHERE workspace_id = $1 AND hash = $2`, [workspaceId, hash]);
    return row && toObject(row);
  }

  async put(workspaceId: string, hash: string, size: number) {
    const created = await this.db.run(
      `INSERT INTO object (workspace_id, hash, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, [workspaceId, hash, size, now()],
    ) === 1;
    return { object: (await this.get(workspaceId, hash))!, created };
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<ObjectRow>(
      `SELECT hash, size, created_at FROM object WHERE workspace_id = $1 ORDER BY created_at, hash LIMIT $2 OFFSET $3`, [workspaceId, page.limit, page.offset],
    );
    return rows.map(toObject);
  }

  async totalBytes(workspaceId: string) {
    return (await this.db.row<{ bytes: number }>(`SELECT COALESCE(SUM(size), 0)::bigint AS bytes FROM object WHERE workspace_id = $1`, [workspaceId]))!.bytes;
  }
}

/** Stub rows in the SQLite row shape (config as JSON text). */
const STUB_COLUMNS = "id, workspace_id, app_id, name, type, object_id, config::text AS config, config_hash, created_at";

export class PostgresStubRepo implements StubRepo {
  private readonly stubCache = new BoundedMap<string, Stub>(10_000);

  constructor(private readonly db: Db) {}

  private find(s: NewStub) {
    return this.db.row<StubRow>(
      `SELECT ${STUB_COLUMNS} FROM stub WHERE workspace_id = $1 AND app_id = $2 AND name = $3 AND type = $4
         AND object_id IS NOT DISTINCT FROM $5 AND config_hash = $6`,
      [s.workspaceId, s.appId, s.name, s.type, s.objectId, s.configHash],
    );
  }

  async getOrCreate(s: NewStub) {
    const existing = await this.find(s);
    if (existing) return { stub: toStub(existing), created: false };
    // The conflict target is the stub_identity index (a missing object counts as one value).
    const inserted = await this.db.row<StubRow>(
      `INSERT INTO stub (id, workspace_id, app_id, name, type, object_id, config, config_hash, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (workspace_id, app_id, name, type, (COALESCE(object_id, '')), config_hash) DO NOTHING
       RETURNING ${STUB_COLUMNS}`,
      [newId(), s.workspaceId, s.appId, s.name, s.type, s.objectId, JSON.stringify(s.config), s.configHash, now()],
    );
    if (inserted) return { stub: toStub(inserted), created: true };
    return { stub: toStub((await this.find(s))!), created: false };
  }

  async get(workspaceId: string, id: string) {
    const cached = this.stubCache.get(id);
    if (cached) return cached.workspaceId === workspaceId ? cached : undefined;
    const row = await this.db.row<StubRow>(`SELECT ${STUB_COLUMNS} FROM stub WHERE workspace_id = $1 AND id = $2`, [workspaceId, id]);
    if (!row) return undefined;
    const stub = toStub(row);
    this.stubCache.set(id, stub);
    return stub;
  }

  async getAny(id: string) {
    const row = await this.db.row<StubRow>(`SELECT ${STUB_COLUMNS} FROM stub WHERE id = $1`, [id]);
    return row && toStub(row);
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<StubRow>(`SELECT ${STUB_COLUMNS} FROM stub WHERE workspace_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3`,
      [workspaceId, page.limit, page.offset]);
    return rows.map(toStub);
  }

  async names(workspaceId: string, ids: readonly string[]) {
    if (ids.length === 0) return new Map<string, string>();
    const rows = await this.db.rows<{ id: string; name: string }>(`SELECT id, name FROM stub WHERE workspace_id = $1 AND id = ANY($2::text[])`,
      [workspaceId, [...new Set(ids)]]);
    return new Map(rows.map((r) => [r.id, r.name]));
  }
}

const DEPLOYMENT_COLUMNS = "id, workspace_id, app_id, stub_id, stub_type, name, version, active::int AS active, created_at, updated_at";

export class PostgresDeploymentRepo implements DeploymentRepo {
  constructor(private readonly db: Db) {}

  create(workspaceId: string, stubId: string, name: string) {
    return this.db.tx(async (q) => {
      // Creations of one name take turns across gateways: each reads the newest version after
      // the previous one committed, so versions count 1, 2, 3 without gaps or conflicts.
      await q.run("SELECT pg_advisory_xact_lock($1, hashtext($2))", [LOCK.deployment, `${workspaceId}/${name}`]);
      const stub = await q.row<{ id: string; app_id: string; type: string }>(`SELECT id, app_id, type FROM stub WHERE workspace_id = $1 AND id = $2`,
        [workspaceId, stubId]);
      if (!stub) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "stub", id: stubId });
      if (!stub.type.endsWith("/deployment")) throw new Beta9Error("STUB_NOT_DEPLOYABLE", { id: stubId, type: stub.type });
      const existingType = (await q.row<{ stub_type: string }>(
        `SELECT stub_type FROM deployment WHERE workspace_id = $1 AND name = $2 AND deleted_at IS NULL LIMIT 1`, [workspaceId, name],
      ))?.stub_type;
      if (existingType !== undefined && existingType !== stub.type) {
        throw new Beta9Error("CONFLICT", { reason: `deployment ${name} is a ${existingType}; deploy this ${stub.type} under another name` });
      }
      const version = ((await q.row<{ v: number | null }>(`SELECT MAX(version) AS v FROM deployment WHERE workspace_id = $1 AND name = $2`,
        [workspaceId, name]))?.v ?? 0) + 1;
      const ts = now();
      const row: DeploymentRow = {
        id: newId(), workspace_id: workspaceId, app_id: stub.app_id, stub_id: stub.id, stub_type: stub.type,
        name, version, active: 1, created_at: ts, updated_at: ts,
      };
      try {
        await q.run(
          `INSERT INTO deployment (id, workspace_id, app_id, stub_id, stub_type, name, version, active, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8, $8)`,
          [row.id, workspaceId, row.app_id, row.stub_id, row.stub_type, name, version, ts],
        );
      } catch (err) {
        if (isUniqueViolation(err)) throw new Beta9Error("CONFLICT", { reason: `deployment ${name} v${version} was created concurrently; retry` });
        throw err;
      }
      return toDeployment(row);
    });
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<DeploymentRow>(`SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL`,
      [workspaceId, id]);
    return row && toDeployment(row);
  }

  async resolve(workspaceId: string, name: string, version: number | "latest") {
    const row = version === "latest"
      ? await this.db.row<DeploymentRow>(
        `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = $1 AND name = $2 AND active AND deleted_at IS NULL
         ORDER BY version DESC LIMIT 1`, [workspaceId, name])
      : await this.db.row<DeploymentRow>(
        `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE workspace_id = $1 AND name = $2 AND version = $3 AND deleted_at IS NULL`,
        [workspaceId, name, version]);
    return row && toDeployment(row);
  }

  async list(workspaceId: string, filter: DeploymentFilter) {
    const params: unknown[] = [workspaceId, filter.limit, filter.offset];
    const where = ["workspace_id = $1", "deleted_at IS NULL"];
    if (filter.name !== undefined) where.push(`name = $${params.push(filter.name)}`);
    if (filter.active !== undefined) where.push(`active = $${params.push(filter.active)}`);
    const rows = await this.db.rows<DeploymentRow>(
      `SELECT ${DEPLOYMENT_COLUMNS} FROM deployment WHERE ${where.join(" AND ")} ORDER BY created_at DESC, seq DESC LIMIT $2 OFFSET $3`, params,
    );
    return rows.map(toDeployment);
  }

  async setActive(workspaceId: string, id: string, active: boolean) {
    const row = await this.db.row<DeploymentRow>(
      `UPDATE deployment SET active = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4 AND deleted_at IS NULL RETURNING ${DEPLOYMENT_COLUMNS}`,
      [active, now(), workspaceId, id],
    );
    return row && toDeployment(row);
  }

  async delete(workspaceId: string, id: string) {
    const ts = now();
    return await this.db.run(
      `UPDATE deployment SET active = FALSE, deleted_at = $1, updated_at = $1 WHERE workspace_id = $2 AND id = $3 AND deleted_at IS NULL`,
      [ts, workspaceId, id],
    ) === 1;
  }
}
