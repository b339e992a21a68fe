/**
 * Versioned schema migrations. Append only: a released migration is never edited, a change is a
 * new entry. Each runs in its own transaction together with its row in `schema_migrations`.
 */
import type Database from "better-sqlite3";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "core entities",
    sql: `
      CREATE TABLE workspace (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        signing_key TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE token (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('admin','workspace','restricted','worker','machine')),
        name TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        revoked_at TEXT
      );
      CREATE INDEX token_workspace ON token(workspace_id, created_at);
      CREATE TABLE app (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (workspace_id, name)
      );
      CREATE TABLE object (
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (workspace_id, hash)
      );
      CREATE TABLE stub (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        app_id TEXT NOT NULL REFERENCES app(id),
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        object_id TEXT,
        config TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (workspace_id, app_id, name, type, object_id, config_hash)
      );
      CREATE TABLE deployment (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        app_id TEXT NOT NULL REFERENCES app(id),
        stub_id TEXT NOT NULL REFERENCES stub(id),
        stub_type TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        UNIQUE (workspace_id, name, version)
      );
      CREATE INDEX deployment_list ON deployment(workspace_id, deleted_at, created_at);
      CREATE TABLE task (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        stub_id TEXT NOT NULL REFERENCES stub(id),
        status TEXT NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0,
        container_id TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT
      );
      CREATE INDEX task_workspace ON task(workspace_id, created_at);
      CREATE TABLE pool (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
      );
      CREATE TABLE machine (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        pool TEXT NOT NULL,
        state TEXT NOT NULL,
        hostname TEXT,
        cpu_millicores INTEGER NOT NULL DEFAULT 0,
        memory_mib INTEGER NOT NULL DEFAULT 0,
        gpus TEXT NOT NULL DEFAULT '[]',
        last_keepalive_at TEXT,
        created_at TEXT NOT NULL
      );
      CREATE INDEX machine_workspace ON machine(workspace_id, pool);
    `,
  },
  {
    version: 2,
    name: "images",
    sql: `
      CREATE TABLE image (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('building','ready','failed')),
        size INTEGER,
        sha256 TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE workspace_image (
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        image_id TEXT NOT NULL REFERENCES image(id),
        created_at TEXT NOT NULL,
        PRIMARY KEY (workspace_id, image_id)
      );
    `,
  },
  {
    version: 3,
    name: "durable tasks",
    sql: `
      ALTER TABLE task ADD COLUMN input TEXT;
      ALTER TABLE task ADD COLUMN result TEXT;
      ALTER TABLE task ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE task ADD COLUMN timeout_s INTEGER NOT NULL DEFAULT -1;
      ALTER TABLE task ADD COLUMN expires_at TEXT;
      ALTER TABLE task ADD COLUMN next_attempt_at TEXT;
      CREATE INDEX task_queue ON task(stub_id, status, next_attempt_at, created_at);
    `,
  },
  {
    version: 4,
    name: "schedule ticks",
    sql: `
      CREATE TABLE schedule_tick (
        stub_id TEXT PRIMARY KEY REFERENCES stub(id),
        last_tick TEXT NOT NULL
      );
      CREATE INDEX deployment_by_type ON deployment(stub_type, active, deleted_at);
    `,
  },
  {
    version: 5,
    name: "sandboxes",
    sql: `
      CREATE TABLE sandbox (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        container_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','TERMINATED')),
        reason TEXT,
        config TEXT NOT NULL,
        expires_at TEXT,
        created_at TEXT NOT NULL,
        ended_at TEXT
      );
      CREATE INDEX sandbox_list ON sandbox(workspace_id, created_at);
      CREATE INDEX sandbox_live ON sandbox(state, expires_at);
    `,
  },
  {
    version: 6,
    name: "machine registry",
    sql: `
      ALTER TABLE machine ADD COLUMN token_id TEXT REFERENCES token(id);
      ALTER TABLE machine ADD COLUMN os TEXT;
      ALTER TABLE machine ADD COLUMN arch TEXT;
      ALTER TABLE machine ADD COLUMN agent_version TEXT;
      ALTER TABLE machine ADD COLUMN metrics TEXT;
      ALTER TABLE machine ADD COLUMN cordoned INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE machine ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
      CREATE UNIQUE INDEX machine_token ON machine(token_id);
      CREATE INDEX machine_expiry ON machine(state, last_keepalive_at);
    `,
  },
  {
    version: 7,
    name: "secrets",
    sql: `
      CREATE TABLE secret (
        workspace_id TEXT NOT NULL REFERENCES workspace(id),
        name TEXT NOT NULL,
        sealed TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (workspace_id, name)
      );
    `,
  },
  {
    version: 8,
    name: "task list filters",
    // GET /task?status=…&stub=…|deployment=…: newest first within one status, or within one stub
    // (a deployment's stubs are a handful), without walking the workspace's whole history.
    sql: `
      CREATE INDEX task_status_list ON task(workspace_id, status, created_at);
      CREATE INDEX task_stub_list ON task(stub_id, created_at);
    `,
  },
  {
    version: 9,
    name: "gateways own running attempts",
    // Which gateway runs an attempt, and which gateways are alive: with several gateways on one
    // database, one that restarts re-queues only its own attempts, and the others re-queue a dead
    // one's. A SQLite store has one gateway: the column stays empty and the table unused.
    sql: `
      ALTER TABLE task ADD COLUMN gateway_id TEXT;
      CREATE TABLE gateway (id TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
    `,
  },
  {
    version: 10,
    name: "gateways own image builds",
    // As task.gateway_id (Postgres: which gateway started a build); one gateway here, so it stays empty.
    sql: `ALTER TABLE image ADD COLUMN gateway_id TEXT;`,
  },
  {
    version: 11,
    name: "gateways advertise where they answer",
    // As Postgres's (the schema versions stay aligned for store migrate); one gateway here: unused.
    sql: `ALTER TABLE gateway ADD COLUMN url TEXT; ALTER TABLE gateway ADD COLUMN pools TEXT;`,
  },
  {
    version: 12,
    name: "attempts resume on their container",
    // An attempt cut off by its gateway's stop is sent again to the container that ran it, whose
    // runner joins the running handler or answers its kept result (the runner's task-attempts.ts).
    sql: `ALTER TABLE task ADD COLUMN resume_container TEXT; CREATE INDEX task_resume ON task(stub_id, resume_container) WHERE resume_container IS NOT NULL;`,
  },
];

export class MigrationError extends Error {
  override name = "MigrationError";
}

/** Brings the schema up to the newest version; refuses a database written by a newer beta9. */
export function migrate(db: Database.Database, list: readonly Migration[] = migrations): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null };
  const current = row.v ?? 0;
  const newest = list.at(-1)?.version ?? 0;
  if (current > newest) {
    throw new MigrationError(
      `the data directory has schema version ${current}, newer than this beta9 knows (${newest}); upgrade beta9`,
    );
  }
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  for (const m of list) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, new Date().toISOString());
    })();
  }
  return newest;
}
