/**
 * The shared store: a Postgres database that several gateways can use at once (issue 13's first
 * step). Nothing is cached on the assumption of being the only writer, except stubs, which never
 * change once written; token revocations reach every gateway through LISTEN/NOTIFY.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import pg from "pg";
import type { Peer, PeerDirectory, Store } from "../types.js";
import { describeStore, StoreUnavailableError } from "../open.js";
import { Db, TYPES } from "./db.js";
import { PostgresTokenRepo, PostgresWorkspaceRepo, TOKEN_REVOKED_CHANNEL } from "./identity.js";
import { IMAGE_OFFERED_CHANNEL, PostgresImageRepo } from "./images.js";
import { Listener } from "./listener.js";
import { PostgresMachineRepo } from "./machines.js";
import { migratePostgres } from "./migrations.js";
import { PostgresSandboxRepo } from "./sandboxes.js";
import { PostgresScheduleRepo } from "./schedules.js";
import { PostgresSecretRepo } from "./secrets.js";
import { PostgresPoolRepo, PostgresTaskRepo, TASK_ENDED_CHANNEL, TASK_QUEUED_CHANNEL, type GatewayPresence } from "./tasks.js";
import { PostgresAppRepo, PostgresDeploymentRepo, PostgresObjectRepo, PostgresStubRepo } from "./workloads.js";

/** How long the first connection may take when the URL sets no connect_timeout (seconds, as in libpq). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const POOL_SIZE = 10;

export interface PostgresStoreOptions {
  /** Default: the URL's connect_timeout (seconds), else DEFAULT_CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  poolSize?: number;
  /**
   * This gateway's id among those on the database, the same across its restarts (the gateway keeps
   * it in its data dir): a restarted gateway re-queues its own running attempts at once. Default: a new one.
   */
  gatewayId?: string;
  /** How often this gateway says it is alive (default 5 s); one unseen for 6 times that is gone. */
  heartbeatMs?: number;
}

function connectTimeoutMs(url: string, options: PostgresStoreOptions): number {
  if (options.connectTimeoutMs !== undefined) return options.connectTimeoutMs;
  const seconds = Number(/[?&]connect_timeout=(\d+)(&|$)/.exec(url)?.[1] ?? Number.NaN);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : DEFAULT_CONNECT_TIMEOUT_MS;
}

/** Why a connection failed, in words (a refused connect to "localhost" is an AggregateError of both addresses). */
function reason(err: unknown, timeoutMs: number): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map((e) => reason(e, timeoutMs)).join("; ");
  const message = err instanceof Error ? err.message || (err as { code?: string }).code || err.name : String(err);
  if (/timeout/i.test(message)) return `no answer within ${timeoutMs / 1000} s (${message})`;
  return message;
}

const PEER_CACHE_MS = 1000;

function parsePeer(text: string | null): { pools: string[]; host: string | undefined } {
  try {
    const value = JSON.parse(text ?? "{}") as { pools?: unknown; host?: unknown };
    const pools = Array.isArray(value.pools) ? value.pools.filter((p): p is string => typeof p === "string") : [];
    return { pools, host: typeof value.host === "string" ? value.host : undefined };
  } catch {
    return { pools: [], host: undefined };
  }
}

/** A URL that reaches whichever machine calls it: loopback and unspecified addresses, localhost names. */
export function isLoopbackUrl(url: string): boolean {
  try {
    const host = new URL(url).hostname.toLowerCase().replace(/\.$/, "");
    return host === "localhost" || host.endsWith(".localhost") || host.startsWith("127.") || host === "0.0.0.0" ||
      host === "[::1]" || host === "[::]" || /^\[::ffff:(127\.|7f)/.test(host) || host === "[::ffff:0:0]";
  } catch {
    return true;
  }
}

export class PostgresStore implements Store {
  readonly workspaces: PostgresWorkspaceRepo;
  readonly tokens: PostgresTokenRepo;
  readonly apps: PostgresAppRepo;
  readonly objects: PostgresObjectRepo;
  readonly stubs: PostgresStubRepo;
  readonly deployments: PostgresDeploymentRepo;
  readonly tasks: PostgresTaskRepo;
  readonly pools: PostgresPoolRepo;
  readonly machines: PostgresMachineRepo;
  readonly images: PostgresImageRepo;
  readonly schedules: PostgresScheduleRepo;
  readonly sandboxes: PostgresSandboxRepo;
  readonly secrets: PostgresSecretRepo;
  private listener: Listener | undefined;
  private closed = false;
  private readonly db: Db;
  private heartbeat: NodeJS.Timeout | undefined;
  private describe: (() => { url: string; pools: string[]; host: string }) | undefined;
  /** An announce asked for while a beat was in flight: that beat may carry the old pools. */
  private announceAgain = false;
  private peerCache: { at: number; list: Promise<Peer[]> } | undefined;
  /** The other gateways on this database (their heartbeat rows). */
  readonly peers: PeerDirectory;
  /** Since when this gateway's heartbeat has been written without a failure or a late beat (undefined: the last one failed). */
  private seenSince: number | undefined;
  private lastBeatAt = 0;
  /** The heartbeat in flight: beats never overlap, and close waits for it before its goodbye. */
  private beating: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    readonly schemaVersion: number,
    private readonly url: string,
    readonly gatewayId: string,
    private readonly heartbeatMs: number,
  ) {
    const db = (this.db = new Db(pool));
    this.peers = {
      self: gatewayId,
      advertise: (describe) => {
        this.describe = describe;
      },
      announce: () => void this.announce(),
      list: () => this.listPeers(),
    };
    const presence: GatewayPresence = {
      id: gatewayId, staleAfterMs: heartbeatMs * 6,
      steady: () => this.seenSince !== undefined && Date.now() - this.seenSince >= heartbeatMs * 6,
    };
    this.tokens = new PostgresTokenRepo(db, randomUUID());
    this.workspaces = new PostgresWorkspaceRepo(db, this.tokens);
    this.apps = new PostgresAppRepo(db);
    this.objects = new PostgresObjectRepo(db);
    this.stubs = new PostgresStubRepo(db);
    this.deployments = new PostgresDeploymentRepo(db);
    this.tasks = new PostgresTaskRepo(db, presence);
    this.pools = new PostgresPoolRepo(db);
    this.machines = new PostgresMachineRepo(db, this.tokens);
    this.images = new PostgresImageRepo(db, presence);
    this.schedules = new PostgresScheduleRepo(db);
    this.sandboxes = new PostgresSandboxRepo(db);
    this.secrets = new PostgresSecretRepo(db);
  }

  /**
   * Connects (within the connect timeout: an unreachable server fails the start with
   * StoreUnavailableError rather than hanging it), migrates, and starts listening.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const timeoutMs = connectTimeoutMs(url, options);
    const config: pg.PoolConfig = {
      connectionString: url, connectionTimeoutMillis: timeoutMs, keepAlive: true, types: TYPES, application_name: "beta9-gateway",
    };
    const pool = new pg.Pool({ ...config, max: options.poolSize ?? POOL_SIZE });
    // An idle pooled connection that breaks (a server restart) is dropped from the pool and the next
    // query opens another; unhandled, the event would end the process.
    pool.on("error", () => undefined);
    try {
      (await pool.connect()).release();
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw new StoreUnavailableError(`cannot connect to the Postgres store ${describeStore(url, "")}: ${reason(err, timeoutMs)}`);
    }
    let store: PostgresStore | undefined;
    try {
      store = new PostgresStore(pool, await migratePostgres(pool), url, options.gatewayId ?? randomUUID(), options.heartbeatMs ?? 5000);
      await store.beat();
      store.startHeartbeat();
      const { tokens, tasks, images } = store;
      store.listener = new Listener(config, {
        [TOKEN_REVOKED_CHANNEL]: (payload) => tokens.notified(payload),
        [TASK_QUEUED_CHANNEL]: (payload) => tasks.notified(TASK_QUEUED_CHANNEL, payload),
        [TASK_ENDED_CHANNEL]: (payload) => tasks.notified(TASK_ENDED_CHANNEL, payload),
        [IMAGE_OFFERED_CHANNEL]: (payload) => images.notified(payload),
      });
      await store.listener.start();
      return store;
    } catch (err) {
      // A refused database (a MigrationError, say) must not leave connections open.
      if (store) await store.close();
      else await pool.end().catch(() => undefined);
      throw err;
    }
  }

  /** Says this gateway is alive: the others leave its running attempts alone while it does. */
  private async beat(): Promise<void> {
    try {
      const self = this.describe?.();
      await this.db.run(
        `INSERT INTO gateway (id, seen_at, url, pools) VALUES ($1, now(), $2, $3) ON CONFLICT (id) DO UPDATE SET seen_at = now(), url = $2, pools = $3`,
        [this.gatewayId, self?.url ?? null, self ? JSON.stringify({ pools: self.pools, host: self.host }) : null],
      );
      const now = Date.now();
      // A beat that came late (a stalled loop, a pool full for seconds) may have let others judge this
      // gateway gone: it is not steady again until a whole stale period of beats on time.
      if (this.seenSince === undefined || now - this.lastBeatAt > this.heartbeatMs * 2) this.seenSince = now;
      this.lastBeatAt = now;
    } catch (err) {
      this.seenSince = undefined;
      throw err;
    }
  }

  private startHeartbeat(): void {
    // The same loop as announce(): a change asked for during a beat is sent right after it.
    this.heartbeat = setInterval(() => void this.announce(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    await this.beating; // a beat landing after the goodbye would bring this gateway back for a stale period
    await this.tasks.flushNotices();
    // Gone at once, not after the heartbeat's silence: the others re-queue what it was running now.
    await this.db.run(`DELETE FROM gateway WHERE id = $1`, [this.gatewayId]).catch(() => undefined);
    await this.listener?.close();
    await this.pool.end();
  }

  private listPeers(): Promise<Peer[]> {
    const now = Date.now();
    if (!this.peerCache || now - this.peerCache.at > PEER_CACHE_MS) {
      const list = this.db.rows<{ id: string; url: string; pools: string | null }>(
        `SELECT id, url, pools FROM gateway WHERE id <> $1 AND url IS NOT NULL AND seen_at > now() - $2::int * interval '1 millisecond' ORDER BY id`,
        [this.gatewayId, this.heartbeatMs * 6],
      ).then((rows) => rows.flatMap((r) => {
        const { pools, host } = parsePeer(r.pools);
        // A loopback URL means that gateway's own machine: useless (and a token sent to the wrong place) from another.
        return isLoopbackUrl(r.url) && host !== hostname() ? [] : [{ id: r.id, url: r.url, pools }];
      }));
      list.catch(() => (this.peerCache = undefined));
      this.peerCache = { at: now, list };
    }
    return this.peerCache.list;
  }

  /** Says where this gateway answers and what it has now (a worker connected or left), not at the next beat. */
  async announce(): Promise<void> {
    if (this.closed) return;
    if (this.beating) {
      this.announceAgain = true;
      return;
    }
    do {
      this.announceAgain = false;
      this.beating = this.beat().catch(() => undefined).finally(() => (this.beating = undefined));
      await this.beating;
    } while (this.announceAgain && !this.closed);
  }

  toString(): string {
    return `PostgresStore(${describeStore(this.url, "")})`;
  }
}
