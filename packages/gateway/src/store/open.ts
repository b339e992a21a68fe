/**
 * Which store a gateway runs on: the embedded SQLite file in its data directory (the default, and
 * always for `beta9 up`), or a Postgres database named by a postgres:// URL (`beta9 gateway
 * --store`), which several gateways can share.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Store } from "./types.js";

/** A store ready for a gateway: migrated, with the schema version its health route reports. */
export type GatewayStore = Store & { readonly schemaVersion: number };

/** The store could not be reached or opened at start (a refused or timed-out connection, a login refused). */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
}

export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

/** `spec`: undefined or "sqlite" for the data directory's SQLite file, else a postgres:// URL. */
export async function openStore(spec: string | undefined, dataDir: string): Promise<GatewayStore> {
  if (spec === undefined || spec === "sqlite") {
    const { SqliteStore } = await import("./sqlite/store.js");
    return new SqliteStore(join(dataDir, "gateway.db"));
  }
  if (!isPostgresUrl(spec)) {
    throw new StoreUnavailableError(`unknown store "${spec.split("://")[0]}"; use sqlite (the default) or a postgres://user:password@host:5432/database URL`);
  }
  // Loaded only when asked for: a SQLite gateway never loads the Postgres client.
  const { PostgresStore } = await import("./postgres/store.js");
  return PostgresStore.open(spec, { gatewayId: gatewayIdOf(dataDir) });
}

/**
 * This gateway's id among the gateways of a shared store, kept in its data dir (`gateway-id`) so
 * that a restarted gateway is the same one: it re-queues its own running attempts at once.
 */
export function gatewayIdOf(dataDir: string): string {
  const path = join(dataDir, "gateway-id");
  try {
    const id = readFileSync(path, "utf8").trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
  } catch {
    // not there yet
  }
  const id = randomUUID();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(path, `${id}\n`, { mode: 0o600 });
  return id;
}

/**
 * The store for logs and messages: the SQLite path, or the URL without its password. Parsed by
 * hand: WHATWG URL refuses libpq forms such as postgres://user@/db?host=/run/postgresql.
 */
export function describeStore(spec: string | undefined, dataDir: string): string {
  if (spec === undefined || spec === "sqlite") return join(dataDir, "gateway.db");
  const parts = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(spec);
  if (!parts) return "(an unparsable store URL)";
  const [, scheme, authority = "", after = ""] = parts;
  const rest = after.replace(/([?&]password=)[^&]*/gi, "$1***"); // libpq also takes it as a parameter
  const at = authority.lastIndexOf("@");
  const userinfo = authority.slice(0, Math.max(at, 0));
  const colon = userinfo.indexOf(":");
  return colon < 0 ? `${scheme}${authority}${rest}` : `${scheme}${userinfo.slice(0, colon)}:***${authority.slice(at)}${rest}`;
}
