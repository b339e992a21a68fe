/**
 * Moving a single-node gateway to Postgres: copies every row of a data directory's SQLite store
 * into an empty Postgres database, in one transaction, so the copy is all or nothing.
 *
 * Both schemas are the same versioned migrations (postgres/migrations.ts mirrors
 * sqlite/migrations.ts, column for column), so the copy is generic: each table's columns by name,
 * in the order SQLite created the tables (a table is created after those it references), each
 * value converted to its Postgres column's type. `seq` columns (Postgres's stand-in for SQLite's
 * rowid) are generated in rowid order, so lists keep their order.
 *
 * What is not in the database stays in the data directory and travels with it: objects (code
 * bundles, image artifacts, volume chunks), logs.db, and secrets.key (the secrets are copied
 * sealed; the Postgres gateway needs the same key to open them).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { lockDataDir } from "../server.js";
import { describeStore, StoreUnavailableError } from "./open.js";
import { PostgresStore } from "./postgres/store.js";
import { TYPES } from "./postgres/db.js";
import { SqliteStore } from "./sqlite/store.js";

/** Why a copy was refused before anything was written. */
export class StoreCopyRefusedError extends Error {
  override name = "StoreCopyRefusedError";
}

export interface StoreCopyResult {
  /** Rows copied per table, in copy order. */
  tables: Array<{ table: string; rows: number }>;
  schemaVersion: number;
}

/** Rows per INSERT: well under Postgres's 65,535 parameters for the widest table (17 columns). */
const BATCH_ROWS = 500;

/** The tables the migrations made, in creation order; schema_migrations is each store's own. */
function sourceTables(db: Database.Database): string[] {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid").all() as Array<{ name: string }>;
  return rows.map((r) => r.name).filter((name) => name !== "schema_migrations");
}

/** A SQLite value as the Postgres column of `dataType` takes it (node-pg sends parameters as text). */
function convert(value: unknown, dataType: string): unknown {
  if (value === null || value === undefined) return null;
  if (dataType === "boolean") return value === 1 || value === "1" || value === true;
  if (typeof value === "bigint") return value.toString();
  return value;
}

/**
 * Copies the store of `dataDir` into the Postgres database at `url`. Refuses (StoreCopyRefusedError)
 * when a gateway holds the data directory or the database already has rows; the database is
 * migrated to the same schema version first. `progress` hears each table as it is done.
 */
export async function copySqliteToPostgres(dataDir: string, url: string, progress: (table: string, rows: number) => void = () => {}): Promise<StoreCopyResult> {
  const path = join(dataDir, "gateway.db");
  if (!existsSync(path)) throw new StoreCopyRefusedError(`no gateway database in ${dataDir} (expected ${path}); pass the data dir of the gateway to move (--data-dir)`);
  let unlock: () => void;
  try {
    unlock = lockDataDir(dataDir); // no gateway may write while the copy reads, nor start during it
  } catch (err) {
    throw new StoreCopyRefusedError(`${(err as Error).message} (stop it first: writes after the copy would stay behind)`);
  }
  try {
    // Opening migrates an older data dir to this version's schema, as a gateway start would.
    const sqlite = new SqliteStore(path);
    const schemaVersion = sqlite.schemaVersion;
    await sqlite.close();
    const target = await PostgresStore.open(url);
    const targetVersion = target.schemaVersion;
    await target.close();
    if (targetVersion !== schemaVersion) {
      throw new StoreCopyRefusedError(`the Postgres store is at schema version ${targetVersion}, the data dir at ${schemaVersion}: copy with the beta9 version that wrote the data dir`);
    }
    const db = new Database(path, { readonly: true, fileMustExist: true });
    const pool = new pg.Pool({ connectionString: url, max: 1, types: TYPES });
    try {
      return { tables: await copyTables(db, pool, describeStore(url, dataDir), progress), schemaVersion };
    } finally {
      db.close();
      await pool.end();
    }
  } finally {
    unlock();
  }
}

async function copyTables(db: Database.Database, pool: pg.Pool, target: string, progress: (table: string, rows: number) => void): Promise<StoreCopyResult["tables"]> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw new StoreUnavailableError(`cannot connect to the Postgres store ${target}: ${(err as Error).message}`);
  }
  const copied: StoreCopyResult["tables"] = [];
  try {
    await client.query("BEGIN ISOLATION LEVEL SERIALIZABLE");
    const tables = sourceTables(db);
    for (const table of tables) {
      const { rows } = await client.query(`SELECT EXISTS (SELECT 1 FROM "${table}") AS taken`);
      if ((rows[0] as { taken: boolean }).taken) {
        throw new StoreCopyRefusedError(`the Postgres store ${target} already has rows in ${table}: copy into an empty database (nothing was written)`);
      }
    }
    // Reads inside one SQLite transaction: one consistent snapshot of every table.
    const read = db.transaction(() => tables.map((table) => ({ table, rows: db.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).all() as Array<Record<string, unknown>> })));
    for (const { table, rows } of read()) {
      const columns = (await client.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'NO'",
        [table],
      )).rows as Array<{ column_name: string; data_type: string }>;
      const types = new Map(columns.map((c) => [c.column_name, c.data_type]));
      const names = rows.length > 0 ? Object.keys(rows[0]!) : [];
      const missing = names.filter((n) => !types.has(n));
      if (missing.length > 0) throw new StoreCopyRefusedError(`the Postgres table ${table} has no column ${missing.join(", ")}; the schemas differ (nothing was written)`);
      for (let start = 0; start < rows.length; start += BATCH_ROWS) {
        const batch = rows.slice(start, start + BATCH_ROWS);
        const params: unknown[] = [];
        const tuples = batch.map((row) => `(${names.map((n) => `$${params.push(convert(row[n], types.get(n)!))}`).join(", ")})`);
        await client.query(`INSERT INTO "${table}" (${names.map((n) => `"${n}"`).join(", ")}) VALUES ${tuples.join(", ")}`, params);
      }
      copied.push({ table, rows: rows.length });
      progress(table, rows.length);
    }
    await client.query("COMMIT");
    return copied;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
