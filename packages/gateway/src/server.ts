/**
 * `startGateway`: opens the data directory (object files; the SQLite store unless `store` names a
 * Postgres database), creates the first workspace and admin token on an empty store, and serves
 * the API.
 */
import { resolveQuotas, type WorkspaceQuotas } from "./quotas.js";
import { Secrets } from "./secrets/secrets.js";
import { loadVaultKey, Vault } from "./secrets/vault.js";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { DEFAULT_GATEWAY_PORT, type TokenWithKey, type Workspace } from "@beta9/protocol";
import { buildGatewayApp } from "./app.js";
import { ObjectStore } from "./objects/object-store.js";
import { ImageBuilds } from "./images/image-builds.js";
import { Autoscaler } from "./workloads/autoscaler.js";
import { TaskDispatcher } from "./tasks/dispatcher.js";
import { CronRunner } from "./schedules/cron-runner.js";
import { ContainerRegistry } from "./scheduler/containers.js";
import { Scheduler } from "./scheduler/scheduler.js";
import { attachWorkerSocket } from "./scheduler/worker-socket.js";
import { ShellSessions } from "./shell/sessions.js";
import { TunnelHub } from "./scheduler/tunnels.js";
import { MachineRegistry } from "./machines/registry.js";
import { describeStore, openStore, type GatewayStore } from "./store/open.js";
import { SandboxManager } from "./sandboxes/manager.js";
import { VolumeStore } from "./volumes/volume-store.js";
import { VERSION } from "./version.js";
import { SqliteLogStore } from "./logs/sqlite.js";
import { resolveLogRetention, type LogRetention } from "./logs/types.js";

export interface GatewayOptions {
  host?: string;
  port?: number;
  dataDir: string;
  /**
   * Where durable state lives: unset or "sqlite", the SQLite file in the data directory; a
   * postgres:// URL, a Postgres database (store/postgres) that several gateways can share. An
   * unreachable database fails the start with StoreUnavailableError within its connect timeout.
   */
  store?: string;
  /**
   * Where code bundles and packed images live, shared by several gateways (a shared mount, with
   * `store` a Postgres URL): any of them then serves any object. Unset: `<dataDir>/objects` and
   * `<dataDir>/images`, this gateway's own. Volumes stay in the data dir for now.
   */
  objectsDir?: string;
  /**
   * Where the other gateways on a shared store reach this one (forwarded endpoint calls), e.g.
   * http://10.0.0.5:1994. Default: the URL it listens on (127.0.0.1 for a wildcard host: only
   * gateways on this machine could use it). Default: BETA9_ADVERTISE_URL.
   */
  advertiseUrl?: string;
  /**
   * A CA certificate (PEM) trusted, besides the system's, for the other gateways' https URLs
   * (their self-signed certificates) when calls are forwarded to them. Default: the file BETA9_PEER_CA names.
   */
  peerCa?: string;
  logLevel?: string;
  /** Largest object (code bundle) accepted, in bytes. */
  maxObjectBytes?: number;
  /** How often workers send keepalives (default 15 s) and how long silence is tolerated (default 60 s). */
  workerKeepaliveMs?: number;
  workerTimeoutMs?: number;
  /** How long a container request may wait for room before it fails (default 10 min). */
  backlogTimeoutMs?: number;
  /** An external machine without keepalive this long is expired (default 300 s). */
  machineExpirySeconds?: number;
  /** The keepalive interval machines are told to use (default 60 s, at most a third of the expiry). */
  machineKeepaliveSeconds?: number;
  /** Serve HTTPS with this PEM pair (see tls.ts for the self-signed one `beta9 up --tls` makes). */
  tls?: { cert: string; key: string };
  /**
   * Host name under which exposed sandbox ports get origins of their own, `<id>-<port>.<sandboxHost>`
   * (a wildcard DNS name for the gateway, with its port if not 80/443). Default: BETA9_SANDBOX_HOST; unset, path URLs.
   */
  sandboxHost?: string;
  /** Per-workspace limits; unset ones come from BETA9_QUOTA_* or DEFAULT_QUOTAS (quotas.ts). */
  quotas?: Partial<WorkspaceQuotas>;
  /** How long and how much container log is kept (logs.db in the data dir); unset parts come from BETA9_LOG_* or the defaults (logs/types.ts). */
  logRetention?: Partial<LogRetention>;
  logger?: Logger;
}

export interface RunningGateway {
  url: string;
  port: number;
  /** Set on the very first start only: the workspace and admin token created for an empty store. */
  bootstrap?: { workspace: Workspace; token: TokenWithKey };
  /**
   * A worker token for a worker in this same process or machine (`beta9 up`). Created once and
   * kept in the data directory (mode 0600), so restarts reuse it instead of minting new ones.
   */
  localWorkerToken(): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_MAX_OBJECT_BYTES = 512 * 1024 * 1024;
export const BOOTSTRAP_WORKSPACE = "default";

export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Data directories locked by this process (a pid match alone could be a reused pid). */
const heldLocks = new Set<string>();

/**
 * One gateway per data directory. A lock left by a killed gateway (its pid is gone) is taken
 * over, so `kill -9` followed by a restart just works.
 */
export function lockDataDir(dataDir: string): () => void {
  const lockPath = join(dataDir, "gateway.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockPath, String(process.pid), { flag: "wx" });
      heldLocks.add(lockPath);
      return () => {
        heldLocks.delete(lockPath);
        rmSync(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(lockPath, "utf8"), 10);
      const heldHere = holder === process.pid && heldLocks.has(lockPath);
      if (heldHere || (Number.isFinite(holder) && holder !== process.pid && isAlive(holder))) {
        throw new DataDirLockedError(`another gateway (pid ${holder}) is using ${dataDir}; stop it or pick another --data-dir`);
      }
      rmSync(lockPath, { force: true });
    }
  }
  throw new DataDirLockedError(`could not lock ${dataDir}`);
}

async function localWorkerToken(store: GatewayStore, dataDir: string): Promise<string> {
  const path = join(dataDir, "local-worker.token");
  let key: string | undefined;
  try {
    key = readFileSync(path, "utf8").trim();
  } catch {
    key = undefined;
  }
  if (key && (await store.tokens.authenticate(key))?.type === "worker") return key;
  const [first] = await store.workspaces.list({ limit: 1, offset: 0 });
  if (!first) throw new Error("the store has no workspace to own the local worker's token");
  const token = await store.tokens.create(first.id, "worker", "local worker");
  writeFileSync(path, token.key, { mode: 0o600 });
  return token.key;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const host = options.host ?? "127.0.0.1";
  // Logs go to stderr so that a CLI wrapping the gateway keeps stdout for its own output.
  const logger = options.logger ??
    pino({ level: options.logLevel ?? process.env.BETA9_LOG_LEVEL ?? "info" }, pino.destination({ fd: 2, sync: false }));
  const explicitAdvertise = options.advertiseUrl ?? process.env.BETA9_ADVERTISE_URL;
  if (explicitAdvertise !== undefined && !/^https?:\/\/[^/]+\/?$/.test(explicitAdvertise)) {
    throw new Error(`advertiseUrl ${JSON.stringify(explicitAdvertise)} must be http(s)://HOST:PORT, where the other gateways reach this one`);
  }
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockDataDir(options.dataDir);
  let store: GatewayStore | undefined;
  let scheduler: Scheduler | undefined;
  let autoscaler: Autoscaler | undefined;
  let dispatcher: TaskDispatcher | undefined;
  let machines: MachineRegistry | undefined;
  let sandboxes: SandboxManager | undefined;
  let logs: SqliteLogStore | undefined;
  try {
    logs = new SqliteLogStore(join(options.dataDir, "logs.db"), { retention: resolveLogRetention(options.logRetention), logger });
    store = await openStore(options.store, options.dataDir);
    const shared = options.objectsDir !== undefined;
    // Shared objects are named by the shared store's rows (an image whose row is gone is deleted):
    // gateways on different stores sharing one directory would delete each other's.
    if (shared && !options.store?.startsWith("postgres")) {
      throw new Error("objectsDir (--objects) is for gateways sharing a Postgres store: give --store postgres://… too");
    }
    if (shared) await mkdir(options.objectsDir!, { recursive: true, mode: 0o700 });
    const objects = new ObjectStore(options.objectsDir ?? join(options.dataDir, "objects"), options.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES, shared);
    await objects.init();
    const bootstrap = await store.workspaces.bootstrap(BOOTSTRAP_WORKSPACE);
    // The key lives beside the database but not in it (or comes from BETA9_SECRETS_KEY).
    const secrets = new Secrets(store.secrets, new Vault(loadVaultKey(join(options.dataDir, "secrets.key"))));
    await secrets.load();
    const quotas = resolveQuotas(options.quotas);
    // Volumes live in the object store's directory; start-up removes what a crash left half done.
    const volumes = new VolumeStore(join(options.dataDir, "objects", "volumes"), () => quotas);
    await volumes.init();
    const sandboxHost = options.sandboxHost ?? process.env.BETA9_SANDBOX_HOST;
    const peerCa = options.peerCa ?? readPeerCa(process.env.BETA9_PEER_CA);
    scheduler = new Scheduler(new ContainerRegistry(), {
      logger, quotas,
      ...(options.workerTimeoutMs !== undefined && { workerTimeoutMs: options.workerTimeoutMs }),
      ...(options.backlogTimeoutMs !== undefined && { backlogTimeoutMs: options.backlogTimeoutMs }),
    });
    const builds = new ImageBuilds({
      dir: shared ? join(options.objectsDir!, "images") : join(options.dataDir, "images"), shared, images: store.images, scheduler, logger, quotas, secretValues: (workspaceId, names) => secrets.env(workspaceId, names),
    });
    await builds.init();
    const logStore = logs;
    autoscaler = new Autoscaler({
      scheduler, logger, secretEnv: (workspaceId, names) => secrets.env(workspaceId, names),
      recentLogs: async (workspaceId, containerId, limit) => (await logStore.query({ workspaceId, select: { containerId }, limit })).map((e) => e.line),
    });
    const openScheduler = scheduler;
    dispatcher = new TaskDispatcher({
      store, autoscaler, logger, waitingFor: (stubId) => scheduler?.waiting(stubId)?.message,
      serves: (stub) => openScheduler.hasWorkerFor({ pool: stub.config.pool, workspaceId: stub.workspaceId }),
    });
    machines = new MachineRegistry({
      store, scheduler, logger,
      ...(options.machineExpirySeconds !== undefined && { expirySeconds: options.machineExpirySeconds }),
      ...(options.machineKeepaliveSeconds !== undefined && { keepaliveIntervalSeconds: options.machineKeepaliveSeconds }),
    });
    const openedMachines = machines.start();
    // Sandbox lifetimes live in the store: the reaper ends expired ones, after a restart too.
    sandboxes = new SandboxManager({ store, scheduler, logger, secrets, quotas });
    const openedSandboxes = sandboxes;
    // Tunnelled ports and shells share the worker tunnels.
    const tunnels = new TunnelHub(logger);
    const shells = new ShellSessions({ tunnels, tokens: store.tokens, scheduler, logger });
    const app = await buildGatewayApp(
      { store, objects, volumes, logs, scheduler, builds, autoscaler, dispatcher, machines, sandboxes, secrets, quotas, shells, ...(sandboxHost && { sandboxHost }), ...(peerCa && { peerCa }), version: VERSION, schemaVersion: store.schemaVersion, startedAt: Date.now() },
      logger,
      { ...(options.tls && { https: options.tls }) },
    );
    const closeWorkerSockets = attachWorkerSocket({
      server: app.server, tokens: store.tokens, scheduler, builds, logger,
      machineWorker: (tokenId) => openedMachines.workerIdentity(tokenId), tunnels, drainGraceMs: machines.drainGraceMs, logs,
      // At least four keepalives fit in the timeout, so one late message never drops a worker.
      keepaliveMs: options.workerKeepaliveMs ?? Math.min(15_000, Math.floor((options.workerTimeoutMs ?? 60_000) / 4)),
    });
    await app.listen({ host, port: options.port ?? DEFAULT_GATEWAY_PORT });
    const address = app.server.address();
    const port = typeof address === "object" && address ? address.port : (options.port ?? DEFAULT_GATEWAY_PORT);
    const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    logger.info({ host, port, dataDir: options.dataDir, store: describeStore(options.store, options.dataDir), schemaVersion: store.schemaVersion }, "gateway listening");
    // What the other gateways on a shared store know of this one: where it answers, which pools it has workers in.
    const advertised = explicitAdvertise ?? `${options.tls ? "https" : "http"}://${urlHost}:${port}`;
    // Cluster workers only: a machine serves its own workspace, not every caller of its pool.
    let advertising = true;
    const workerPools = (): string[] => (advertising ? [...new Set(openScheduler.listWorkers()
      .filter((w) => w.connected && !w.cordoned && w.workspaceId === undefined && (w.isolates || w.allowUnisolated === true)).map((w) => w.pool))].sort() : []);
    store.peers?.advertise(() => ({ url: advertised.replace(/\/$/, ""), pools: workerPools(), host: hostname() }));
    store.peers?.announce();
    const announce = () => store?.peers?.announce();
    openScheduler.events.on("worker", announce);
    const opened = store;
    const openedLogs = logs;
    const openedScheduler = scheduler;
    const openedAutoscaler = autoscaler;
    const openedDispatcher = dispatcher;
    // Tasks accepted before a restart resume once workers are back.
    await dispatcher.recover();
    // Deployed schedules: one task per cron tick, claimed in the store so no tick fires twice.
    // Uploads never committed (a worker that died between upload and commit) are collected hourly.
    const volumeSweeper = setInterval(() => void volumes.sweepAll().catch((err: unknown) => logger.warn({ err }, "volume sweep failed")), 3_600_000);
    volumeSweeper.unref();
    const cron = new CronRunner({ store, logger, put: (stub, at) => openedDispatcher.put(stub, { scheduledAt: at.toISOString() }) }).start();
    let closed = false;
    return {
      url: `${options.tls ? "https" : "http"}://${urlHost}:${port}`,
      port,
      ...(bootstrap && { bootstrap }),
      localWorkerToken: () => localWorkerToken(opened, options.dataDir),
      async close() {
        if (closed) return;
        closed = true;
        // Stop drawing forwarded calls before this gateway stops answering them.
        advertising = false;
        opened.peers?.announce();
        await cron.close();
        clearInterval(volumeSweeper);
        openedMachines.close();
        openedSandboxes.close();
        openedDispatcher.close();
        builds.close();
        openedAutoscaler.close();
        openedScheduler.close();
        shells.close();
        closeWorkerSockets();
        await app.close();
        await opened.close();
        await openedLogs.close();
        unlock();
      },
    };
  } catch (err) {
    machines?.close();
    sandboxes?.close();
    dispatcher?.close();
    autoscaler?.close();
    scheduler?.close();
    await store?.close();
    await logs?.close();
    unlock();
    throw err;
  }
}

/** The PEM file BETA9_PEER_CA names, checked: a gateway that could not verify its peers would fail every forwarded call. */
export function readPeerCa(file: string | undefined): string | undefined {
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`the peer CA ${file} cannot be read: ${(err as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`the peer CA ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}
