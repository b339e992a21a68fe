/**
 * The Postgres schema: the same versioned migrations as SQLite (same versions, names and
 * meaning; `postgres.test.ts` checks they line up), in Postgres-native types. Append only, like
 * sqlite/migrations.ts: a change is a new entry in both lists.
 *
 * Type choices: timestamps are timestamptz (read back as the same ISO strings, db.ts); sizes are
 * bigint; flags are boolean; structured config (stub config, image spec, machine gpus/metrics,
 * sandbox config) is jsonb. A task's input and result are `json`, not jsonb: `json` keeps the text
 * exactly as given (the handler receives it as stored) and accepts every JSON string, where jsonb
 * would reorder keys and refuse "\u0000". Ids, names and hashes are text in collation "C" (compared
 * bytewise), so lists sort as in SQLite whatever locale the database was created with.
 * `seq` columns break ties between rows created in the same millisecond (SQLite's rowid did).
 */
import type pg from "pg";
import { LOCK } from "./db.js";
import { MigrationError, type Migration } from "../sqlite/migrations.js";

export const pgMigrations: readonly Migration[] = [
  {
    version: 1,
    name: "core entities",
    sql: `
      CREATE TABLE workspace (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        signing_key TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
      );
      CREATE TABLE token (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('admin','workspace','restricted','worker','machine')),
        name TEXT,
        active BOOLEAN NOT NULL DEFAULT TRUE,
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ
      );
      CREATE INDEX token_workspace ON token(workspace_id, created_at);
      CREATE TABLE app (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        name TEXT COLLATE "C" NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        UNIQUE (workspace_id, name)
      );
      CREATE TABLE object (
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        hash TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (workspace_id, hash)
      );
      CREATE TABLE stub (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        app_id TEXT COLLATE "C" NOT NULL REFERENCES app(id),
        name TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        object_id TEXT COLLATE "C",
        config JSONB NOT NULL,
        config_hash TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
      );
      -- One stub per identity, a missing object included (a plain UNIQUE treats NULLs as distinct).
      CREATE UNIQUE INDEX stub_identity ON stub(workspace_id, app_id, name, type, (COALESCE(object_id, '')), config_hash);
      CREATE TABLE deployment (
        id TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        app_id TEXT COLLATE "C" NOT NULL REFERENCES app(id),
        stub_id TEXT COLLATE "C" NOT NULL REFERENCES stub(id),
        stub_type TEXT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        active BOOLEAN NOT NULL DEFAULT TRUE,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        deleted_at TIMESTAMPTZ,
        UNIQUE (workspace_id, name, version)
      );
      CREATE INDEX deployment_list ON deployment(workspace_id, created_at DESC, seq DESC) WHERE deleted_at IS NULL;
      CREATE TABLE task (
        id TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        stub_id TEXT COLLATE "C" NOT NULL REFERENCES stub(id),
        status TEXT NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0,
        container_id TEXT,
        error TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        ended_at TIMESTAMPTZ
      );
      CREATE INDEX task_workspace ON task(workspace_id, created_at);
      CREATE TABLE pool (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL
      );
      CREATE TABLE machine (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        pool TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL,
        hostname TEXT,
        cpu_millicores INTEGER NOT NULL DEFAULT 0,
        memory_mib INTEGER NOT NULL DEFAULT 0,
        gpus JSONB NOT NULL DEFAULT '[]',
        last_keepalive_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL
      );
      CREATE INDEX machine_workspace ON machine(workspace_id, pool);
    `,
  },
  {
    version: 2,
    name: "images",
    sql: `
      CREATE TABLE image (
        id TEXT COLLATE "C" PRIMARY KEY,
        spec JSONB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('building','ready','failed')),
        size BIGINT,
        sha256 TEXT,
        error TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
      );
      CREATE TABLE workspace_image (
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        image_id TEXT COLLATE "C" NOT NULL REFERENCES image(id),
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (workspace_id, image_id)
      );
    `,
  },
  {
    version: 3,
    name: "durable tasks",
    sql: `
      ALTER TABLE task ADD COLUMN input JSON;
      ALTER TABLE task ADD COLUMN result JSON;
      ALTER TABLE task ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE task ADD COLUMN timeout_s INTEGER NOT NULL DEFAULT -1;
      ALTER TABLE task ADD COLUMN expires_at TIMESTAMPTZ;
      ALTER TABLE task ADD COLUMN next_attempt_at TIMESTAMPTZ;
      -- The claim's two probes (tasks.ts), each an ordered walk of a small partial index.
      CREATE INDEX task_pending ON task(stub_id, created_at, seq) WHERE status = 'PENDING';
      CREATE INDEX task_retry ON task(stub_id, next_attempt_at, seq) WHERE status = 'RETRY';
      CREATE INDEX task_expiry ON task(expires_at) WHERE status = 'PENDING';
      CREATE INDEX task_running ON task(stub_id) WHERE status = 'RUNNING';
    `,
  },
  {
    version: 4,
    name: "schedule ticks",
    sql: `
      CREATE TABLE schedule_tick (
        stub_id TEXT COLLATE "C" PRIMARY KEY REFERENCES stub(id),
        last_tick TIMESTAMPTZ NOT NULL
      );
      CREATE INDEX deployment_by_type ON deployment(stub_type, active, deleted_at);
    `,
  },
  {
    version: 5,
    name: "sandboxes",
    sql: `
      CREATE TABLE sandbox (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        container_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','TERMINATED')),
        reason TEXT,
        config JSONB NOT NULL,
        expires_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ
      );
      CREATE INDEX sandbox_list ON sandbox(workspace_id, created_at);
      CREATE INDEX sandbox_live ON sandbox(state, expires_at);
    `,
  },
  {
    version: 6,
    name: "machine registry",
    sql: `
      ALTER TABLE machine ADD COLUMN token_id TEXT COLLATE "C" REFERENCES token(id);
      ALTER TABLE machine ADD COLUMN os TEXT;
      ALTER TABLE machine ADD COLUMN arch TEXT;
      ALTER TABLE machine ADD COLUMN agent_version TEXT;
      ALTER TABLE machine ADD COLUMN metrics JSONB;
      ALTER TABLE machine ADD COLUMN cordoned BOOLEAN NOT NULL DEFAULT FALSE;
      ALTER TABLE machine ADD COLUMN draining BOOLEAN NOT NULL DEFAULT FALSE;
      CREATE UNIQUE INDEX machine_token ON machine(token_id);
      CREATE INDEX machine_expiry ON machine(state, last_keepalive_at);
    `,
  },
  {
    version: 7,
    name: "secrets",
    sql: `
      CREATE TABLE secret (
        workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspace(id),
        name TEXT COLLATE "C" NOT NULL,
        sealed TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
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
    // tasks.ts: claims record the gateway; store.ts: each gateway's heartbeat in `gateway`.
    sql: `
      ALTER TABLE task ADD COLUMN gateway_id TEXT COLLATE "C";
      CREATE TABLE gateway (id TEXT COLLATE "C" PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL);
      CREATE INDEX task_running_owner ON task(gateway_id) WHERE status = 'RUNNING';
    `,
  },
  {
    version: 10,
    name: "gateways own image builds",
    // images.ts: the gateway that started a build; a starting gateway fails only its own and dead
    // gateways' builds, not those another live gateway runs.
    sql: `ALTER TABLE image ADD COLUMN gateway_id TEXT COLLATE "C";`,
  },
  {
    version: 11,
    name: "gateways advertise where they answer",
    // peers.ts: each heartbeat says where the gateway answers and which pools it has workers in,
    // so a gateway without a worker for an endpoint forwards the call to one that has.
    sql: `ALTER TABLE gateway ADD COLUMN url TEXT; ALTER TABLE gateway ADD COLUMN pools TEXT;`,
  },
  {
    version: 12,
    name: "attempts resume on their container",
    // tasks.ts: an attempt cut off by its gateway's stop or death is sent again to the container
    // that ran it, whose runner joins the running handler or answers its kept result.
    sql: `ALTER TABLE task ADD COLUMN resume_container TEXT COLLATE "C"; CREATE INDEX task_resume ON task(stub_id, resume_container) WHERE resume_container IS NOT NULL;`,
  },
];

/**
 * Brings the schema up to the newest version; refuses a database written by a newer beta9.
 * Gateways starting together take turns (a session advisory lock): one migrates, the others
 * then find the schema current. Each migration commits together with its `schema_migrations` row.
 */
export async function migratePostgres(pool: pg.Pool, list: readonly Migration[] = pgMigrations): Promise<number> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("SELECT pg_advisory_lock($1, 0)", [LOCK.migrate]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`);
      const current = Number((await client.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")).rows[0].v);
      const newest = list.at(-1)?.version ?? 0;
      if (current > newest) {
        throw new MigrationError(`the Postgres store has schema version ${current}, newer than this beta9 knows (${newest}); upgrade beta9`);
      }
      for (const m of list) {
        if (m.version <= current) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [m.version, m.name, new Date().toISOString()]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw err;
        }
      }
      return newest;
    } finally {
      await client.query("SELECT pg_advisory_unlock($1, 0)", [LOCK.migrate]);
    }
  } catch (err) {
    broken = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    // After any failure the connection is dropped, not pooled: its lock or transaction state is unknown.
    client.release(broken);
  }
}
