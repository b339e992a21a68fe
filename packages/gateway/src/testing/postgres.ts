/**
 * A throwaway PostgreSQL server for tests: `initdb` into a temp dir, `postgres` listening on a
 * unix socket in that dir only (no TCP port, so parallel test files never collide), stopped and
 * removed by `close()`. Each `createDatabase()` gives a fresh, empty database (a store per test).
 *
 * The server is spawned directly rather than through `pg_ctl start`: pg_ctl detaches it into a
 * session of its own, whereas a direct child stays in the test's process group, which the test
 * runner kills when a suite ends, so even a test process that dies leaves no server behind.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

/** The server binaries: BETA9_POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/<version>/bin. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.BETA9_POSTGRES_BIN;
  if (fromEnv) return existsSync(join(fromEnv, "postgres")) ? fromEnv : undefined;
  const root = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    return undefined;
  }
  return versions.map((v) => join(root, v, "bin")).find((dir) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres")));
}

/** initdb refuses to run as root: as root, the server runs as the `postgres` user the Debian package creates. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) throw new Error("running as root, but there is no postgres user to run the test server as");
  return { uid: Number(uid), gid: Number(gid) };
}

/** Why Postgres tests cannot run here, or undefined when they can. */
export function postgresUnavailableReason(): string | undefined {
  if (!postgresBinDir()) {
    return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin or BETA9_POSTGRES_BIN); install the Debian package postgresql";
  }
  return undefined;
}

export interface TestPostgres {
  /** A connection URL for `database` (unix socket in the temp dir, trust authentication). */
  url(database: string): string;
  /** A new empty database; returns its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: clients are disconnected), keeping its data. */
  pause(): Promise<void>;
  /** Starts the paused server again on the same data (and socket). */
  resume(): Promise<void>;
  /** Stops the server and removes its directory; safe to call twice. */
  close(): Promise<void>;
}

const USER = "beta9";

export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(postgresUnavailableReason());
  const owner = serverUser();
  const dir = mkdtempSync(join(tmpdir(), "beta9-pg-"));
  let server: ChildProcess | undefined;
  let admin: pg.Client | undefined;
  // A test process that exits without close() (an uncaught error) still stops its server.
  const onExit = () => {
    server?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  const stopServer = async () => {
    const child = server;
    server = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGINT"); // fast shutdown: disconnects clients, exits
      await exited;
    }
  };
  const stop = async () => {
    process.off("exit", onExit);
    await admin?.end().catch(() => undefined);
    admin = undefined;
    await stopServer();
    rmSync(dir, { recursive: true, force: true });
  };
  const as = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const data = join(dir, "data");
  const startServer = async () => {
    const child = spawn(join(bin, "postgres"), [
      "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
      "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "log_min_messages=warning",
    ], { ...as, cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    server = child;
    await new Promise<void>((resolve, reject) => {
      let log = "";
      const onData = (chunk: Buffer) => {
        log = (log + chunk.toString()).slice(-8192);
        if (log.includes("ready to accept connections")) {
          child.stderr?.off("data", onData);
          child.stderr?.resume(); // keep draining: a full pipe would block the server
          child.off("exit", onExit2);
          resolve();
        }
      };
      const onExit2 = (code: number | null) => reject(new Error(`the test postgres exited (${code}) before it was ready:\n${log}`));
      child.stderr?.on("data", onData);
      child.once("exit", onExit2);
      child.once("error", reject);
    });
  };
  try {
    mkdirSync(data, { mode: 0o700 });
    if (owner) {
      chownSync(dir, owner.uid, owner.gid);
      chownSync(data, owner.uid, owner.gid);
    }
    // No fsync anywhere: the data is thrown away, and syncing would only slow the tests.
    await run(join(bin, "initdb"), ["-D", data, "-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"], { ...as, cwd: dir });
    await startServer();
    const url = (database: string) => `postgres://${USER}@/${database}?host=${encodeURIComponent(dir)}`;
    admin = new pg.Client({ connectionString: url("postgres") });
    await admin.connect();
    let databases = 0;
    return {
      url,
      async createDatabase() {
        const name = `t${databases++}`;
        await admin!.query(`CREATE DATABASE ${name}`);
        return url(name);
      },
      async pause() {
        await admin?.end().catch(() => undefined);
        admin = undefined;
        await stopServer();
      },
      async resume() {
        await startServer();
        admin = new pg.Client({ connectionString: url("postgres") });
        await admin.connect();
      },
      close: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
