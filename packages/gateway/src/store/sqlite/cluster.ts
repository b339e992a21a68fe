/** Tasks, pools and machines on SQLite (the scheduler and machine issues extend these). */
import type Database from "better-sqlite3";
import { Beta9Error } from "@beta9/protocol";
import type { MachineRepo, Page, PoolRepo, TaskRepo } from "../types.js";
import {
  isUniqueViolation, newId, now, toMachine, toPool, toTask, type MachineRow, type PoolRow, type TaskRow,
} from "./rows.js";

export class SqliteTaskRepo implements TaskRepo {
  private readonly stubExists;
  private readonly insert;
  private readonly byId;
  private readonly listStmt;

  constructor(db: Database.Database) {
    this.stubExists = db.prepare(`SELECT 1 FROM stub WHERE workspace_id = ? AND id = ?`);
    this.insert = db.prepare(
      `INSERT INTO task (id, workspace_id, stub_id, status, retries, created_at) VALUES (?, ?, ?, 'PENDING', 0, ?)`,
    );
    this.byId = db.prepare(`SELECT * FROM task WHERE workspace_id = ? AND id = ?`);
    this.listStmt = db.prepare(`SELECT * FROM task WHERE workspace_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?`);
  }

  async create(workspaceId: string, stubId: string) {
    if (!this.stubExists.get(workspaceId, stubId)) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "stub", id: stubId });
    const row: TaskRow = {
      id: newId(), workspace_id: workspaceId, stub_id: stubId, status: "PENDING", retries: 0, container_id: null,
      error: null, created_at: now(), started_at: null, ended_at: null,
    };
    this.insert.run(row.id, row.workspace_id, row.stub_id, row.created_at);
    return toTask(row);
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as TaskRow | undefined;
    return row && toTask(row);
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as TaskRow[]).map(toTask);
  }
}

export class SqlitePoolRepo implements PoolRepo {
  private readonly insert;
  private readonly byName;
  private readonly listStmt;

  constructor(db: Database.Database) {
    this.insert = db.prepare(`INSERT INTO pool (id, name, description, created_at) VALUES (?, ?, ?, ?)`);
    this.byName = db.prepare(`SELECT * FROM pool WHERE name = ?`);
    this.listStmt = db.prepare(`SELECT * FROM pool ORDER BY name LIMIT ? OFFSET ?`);
  }

  async create(name: string, description: string) {
    const row: PoolRow = { id: newId(), name, description, created_at: now() };
    try {
      this.insert.run(row.id, row.name, row.description, row.created_at);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("NAME_TAKEN", { kind: "pool", name });
      throw err;
    }
    return toPool(row);
  }

  async getByName(name: string) {
    const row = this.byName.get(name) as PoolRow | undefined;
    return row && toPool(row);
  }

  async list(page: Page) {
    return (this.listStmt.all(page.limit, page.offset) as PoolRow[]).map(toPool);
  }
}

export class SqliteMachineRepo implements MachineRepo {
  private readonly byId;
  private readonly listAll;
  private readonly listPool;

  constructor(db: Database.Database) {
    this.byId = db.prepare(`SELECT * FROM machine WHERE workspace_id = ? AND id = ?`);
    this.listAll = db.prepare(`SELECT * FROM machine WHERE workspace_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?`);
    this.listPool = db.prepare(
      `SELECT * FROM machine WHERE workspace_id = ? AND pool = ? ORDER BY created_at, id LIMIT ? OFFSET ?`,
    );
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as MachineRow | undefined;
    return row && toMachine(row);
  }

  async list(workspaceId: string, page: Page & { pool?: string }) {
    const rows = page.pool === undefined
      ? this.listAll.all(workspaceId, page.limit, page.offset)
      : this.listPool.all(workspaceId, page.pool, page.limit, page.offset);
    return (rows as MachineRow[]).map(toMachine);
  }
}
