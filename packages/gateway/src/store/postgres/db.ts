/**
 * The thin layer every Postgres repository uses: queries on the pool or inside one transaction,
 * the type parsers that make values come back exactly as the SQLite store returns them, and the
 * advisory lock namespaces that serialise what SQLite serialised by being a single writer.
 */
import pg from "pg";
import { Beta9Error } from "@beta9/protocol";

/**
 * Value conversions, per connection (not pg's process-wide defaults, which other code may use):
 * timestamptz → the ISO 8601 string the SQLite store stores (timestamps are written from
 * JavaScript, so milliseconds are exact); bigint (COUNT, SUM, sizes) → number.
 */
const parseDate = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ);
export const TYPES = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === pg.types.builtins.TIMESTAMPTZ) return (value: string) => (parseDate(value) as Date).toISOString();
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return format === "binary" ? pg.types.getTypeParser(oid, "binary") : pg.types.getTypeParser(oid, "text");
  },
} as pg.CustomTypesConfig;

/**
 * Namespaces (the first key) of `pg_advisory_xact_lock(namespace, key)`. Transaction-scoped:
 * released at COMMIT/ROLLBACK, so a crashed gateway never leaves one held.
 */
export const LOCK = {
  /** The whole migration run (session lock, see migrations.ts). */
  migrate: 0x62390001,
  /** "Create the first workspace on an empty store": one gateway does it. */
  bootstrap: 0x62390002,
  /** Token revocations, so two never both pass the "not the last admin token" check. */
  revoke: 0x62390003,
  /** Per deployment name (key: hashtext(workspace/name)): versions count 1, 2, 3 without gaps. */
  deployment: 0x62390004,
} as const;

export type Params = readonly unknown[];

/** What a repository runs queries on: the pool, or one transaction's connection. */
export interface Queryable {
  rows<T>(sql: string, params?: Params): Promise<T[]>;
  row<T>(sql: string, params?: Params): Promise<T | undefined>;
  /** Rows changed (or returned) by the statement. */
  run(sql: string, params?: Params): Promise<number>;
}

/** Net errors of the connection itself (a Unix socket path that is gone included; a name that briefly does not resolve). */
const LOST_NET = new Set(["ECONNREFUSED", "ECONNRESET", "ENOENT", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ENOTFOUND"]);
/**
 * SQLSTATEs of a database that cannot be reached now: connection exceptions (not 08P01, a protocol
 * violation: a bug, which must not read as "try again"), shutting down or starting, too many connections.
 */
const LOST_SQLSTATE = new Set(["08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03", "53300"]);

/**
 * Whether a failure of the pool or a query means the database cannot be reached now, rather than
 * that the statement was wrong: SQLSTATE class 08 (connection exception), the server shutting down
 * or starting (57P01–57P03), too many connections (53300), a net error of the connection, or pg's
 * own words for a connection that ended or could not be made in time.
 */
export function isConnectionLoss(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") return LOST_SQLSTATE.has(code) || LOST_NET.has(code);
  // pg's own errors carry no code: only its words for a connection that ended or could not be made.
  return /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed)/.test(err.message);
}

/** A lost database as the catalogue's 503 (clients try again; the pool reconnects by itself); other errors as they are. */
function whenLost(err: unknown): never {
  if (isConnectionLoss(err)) throw new Beta9Error("STORE_UNAVAILABLE", { reason: (err as Error).message || String((err as { code?: unknown }).code) });
  throw err;
}

function over(target: pg.Pool | pg.PoolClient): Queryable {
  return {
    async rows<T>(sql: string, params: Params = []) {
      return (await target.query(sql, params as unknown[]).catch(whenLost)).rows as T[];
    },
    async row<T>(sql: string, params: Params = []) {
      return (await target.query(sql, params as unknown[]).catch(whenLost)).rows[0] as T | undefined;
    },
    async run(sql: string, params: Params = []) {
      return (await target.query(sql, params as unknown[]).catch(whenLost)).rowCount ?? 0;
    },
  };
}

export class Db implements Queryable {
  private readonly onPool: Queryable;

  constructor(readonly pool: pg.Pool) {
    this.onPool = over(pool);
  }

  rows<T>(sql: string, params?: Params) {
    return this.onPool.rows<T>(sql, params);
  }

  row<T>(sql: string, params?: Params) {
    return this.onPool.row<T>(sql, params);
  }

  run(sql: string, params?: Params) {
    return this.onPool.run(sql, params);
  }

  /** Runs `fn` in one READ COMMITTED transaction on one connection; rolls back if it throws. */
  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch(whenLost);
    let broken: Error | undefined;
    try {
      await client.query("BEGIN").catch(whenLost);
      try {
        const result = await fn(over(client));
        await client.query("COMMIT").catch(whenLost);
        return result;
      } catch (err) {
        await client.query("ROLLBACK").catch((rollbackErr: Error) => {
          broken = rollbackErr; // the connection is unusable: destroy it rather than return it to the pool
        });
        throw err;
      }
    } finally {
      client.release(broken);
    }
  }
}

/** Postgres's unique_violation (SQLSTATE 23505). */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "23505";
}
