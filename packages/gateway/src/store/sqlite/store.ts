/** The embedded default store: one SQLite file in WAL mode inside the gateway's data directory. */
import Database from "better-sqlite3";
import type { Store } from "../types.js";
import { SqlitePoolRepo, SqliteTaskRepo } from "./cluster.js";
import { SqliteMachineRepo } from "./machines.js";
import { SqliteTokenRepo, SqliteWorkspaceRepo } from "./identity.js";
import { SqliteImageRepo } from "./images.js";
import { migrate } from "./migrations.js";
import { SqliteScheduleRepo } from "./schedules.js";
import { SqliteSandboxRepo } from "./sandboxes.js";
import { SqliteSecretRepo } from "./secrets.js";
import { SqliteAppRepo, SqliteDeploymentRepo, SqliteObjectRepo, SqliteStubRepo } from "./workloads.js";

export class SqliteStore implements Store {
  readonly workspaces: SqliteWorkspaceRepo;
  readonly tokens: SqliteTokenRepo;
  readonly apps: SqliteAppRepo;
  readonly objects: SqliteObjectRepo;
  readonly stubs: SqliteStubRepo;
  readonly deployments: SqliteDeploymentRepo;
  readonly tasks: SqliteTaskRepo;
  readonly pools: SqlitePoolRepo;
  readonly machines: SqliteMachineRepo;
  readonly images: SqliteImageRepo;
  readonly schedules: SqliteScheduleRepo;
  readonly sandboxes: SqliteSandboxRepo;
  readonly secrets: SqliteSecretRepo;
  readonly schemaVersion: number;

  /** `path` is a file, or ":memory:" for tests that need no durability. */
  private readonly db: Database.Database;

  constructor(private readonly path: string) {
    const db = new Database(path);
    this.db = db;
    try {
      // WAL + synchronous=NORMAL: a committed transaction survives a process crash (kill -9);
      // only an OS crash or power loss may drop the last few commits.
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      db.pragma("busy_timeout = 5000");
      this.schemaVersion = migrate(db);
    } catch (err) {
      // A refused database (e.g. MigrationError) must not stay open: nobody could close it.
      db.close();
      throw err;
    }
    this.tokens = new SqliteTokenRepo(db);
    this.workspaces = new SqliteWorkspaceRepo(db, this.tokens);
    this.apps = new SqliteAppRepo(db);
    this.objects = new SqliteObjectRepo(db);
    this.stubs = new SqliteStubRepo(db);
    this.deployments = new SqliteDeploymentRepo(db);
    this.tasks = new SqliteTaskRepo(db);
    this.pools = new SqlitePoolRepo(db);
    this.machines = new SqliteMachineRepo(db, this.tokens);
    this.images = new SqliteImageRepo(db);
    this.schedules = new SqliteScheduleRepo(db);
    this.sandboxes = new SqliteSandboxRepo(db);
    this.secrets = new SqliteSecretRepo(db);
  }

  /**
   * The whole content of every table as one string, for tests that assert that a rejected
   * request changed nothing (not merely the row counts: no column either).
   */
  dumpForTests(): string {
    const tables = this.db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
      .all() as { name: string }[];
    return JSON.stringify(tables.map(({ name }) => [name, this.db.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).all()]));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  toString(): string {
    return `SqliteStore(${this.path})`;
  }
}
