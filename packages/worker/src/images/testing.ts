/**
 * Test helpers for the image code (compiled with it, used only by *.test.ts): a tar writer for
 * hand-made layers (whiteouts, hostile names), a real `docker-registry` on a free loopback port
 * (optionally behind real token auth), and temp dirs that are always cleaned up.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { run } from "../exec.js";
import { unmountAllUnder } from "./mounts.js";
import { startTokenServer } from "./testing-auth.js";

export interface TarSpec {
  name: string;
  type?: "file" | "dir" | "symlink" | "hardlink";
  content?: string | Buffer;
  mode?: number;
  linkname?: string;
  uid?: number;
  gid?: number;
}

const TYPE_FLAG = { file: "0", dir: "5", symlink: "2", hardlink: "1" } as const;

function header(e: TarSpec, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number): void => void h.write(value, offset, length, "utf8");
  const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0";
  const type = e.type ?? "file";
  put(e.name, 0, 100);
  put(octal(e.mode ?? (type === "dir" ? 0o755 : 0o644), 8), 100, 8);
  put(octal(e.uid ?? 0, 8), 108, 8);
  put(octal(e.gid ?? 0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(1_700_000_000, 12), 136, 12);
  put(TYPE_FLAG[type], 156, 1);
  put(e.linkname ?? "", 157, 100);
  put("ustar\0" + "00", 257, 8);
  put("        ", 148, 8);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
  return h;
}

/** A ustar archive of `entries`, in order, with the end-of-archive marker. */
export function makeTar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === undefined || e.type === "file" ? Buffer.from(e.content ?? "") : Buffer.alloc(0);
    parts.push(header(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `beta9-${prefix}-`));
  return {
    path,
    cleanup: async () => {
      await unmountAllUnder(path).catch(() => {});
      await rm(path, { recursive: true, force: true });
    },
  };
}

export interface TestRegistry {
  /** host:port, e.g. "127.0.0.1:40123" */
  host: string;
  storageDir: string;
  /** Token requests answered (only with auth). */
  tokenRequests: () => number;
  /** Token requests that carried credentials. */
  authorizedTokenRequests: () => number;
  stop(): Promise<void>;
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${log()}`);
    // The registry itself (it names its API version), not whatever else may hold the port.
    const ok = await request(url).then(async (r) => (await r.body.dump(), (r.statusCode === 200 || r.statusCode === 401) &&
      r.headers["docker-distribution-api-version"] !== undefined), () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not start: ${log()}`);
}

export interface RegistryOptions {
  /** Behind token auth (Bearer): anonymous tokens, or with `users` tokens for their Basic credentials only. */
  auth?: boolean;
  /** With `auth`: the token service's users (name → password). */
  users?: Record<string, string>;
  /** Behind Basic auth (an htpasswd file, bcrypt, written by apache2-utils' htpasswd) for these users. */
  htpasswd?: Record<string, string>;
}

/** Starts `docker-registry serve` on 127.0.0.1 with its own storage, optionally behind token or Basic auth. */
export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await tempDir("registry");
  // The token server first: its listen(0) must not be handed the port picked for the registry.
  const token = options.auth ? await startTokenServer(dir.path, options.users).catch(async (err: unknown) => {
    await dir.cleanup();
    throw err;
  }) : undefined;
  let basic = "";
  if (options.htpasswd) {
    const file = join(dir.path, "htpasswd");
    const lines: string[] = [];
    try {
      for (const [user, password] of Object.entries(options.htpasswd)) lines.push((await run("htpasswd", ["-Bbn", user, password])).trim());
    } catch (err) {
      await dir.cleanup();
      throw err;
    }
    await writeFile(file, `${lines.join("\n")}\n`);
    basic = `auth:\n  htpasswd:\n    realm: beta9-test-basic\n    path: ${file}`;
  }
  const port = await freePort();
  const config = [
    "version: 0.1",
    "log:\n  level: error\n  accesslog:\n    disabled: true",
    `storage:\n  filesystem:\n    rootdirectory: ${join(dir.path, "data")}\n  delete:\n    enabled: true`,
    `http:\n  addr: 127.0.0.1:${port}`,
    token ? `auth:\n  token:\n    realm: ${token.realm}\n    service: ${token.service}\n    issuer: ${token.issuer}\n    rootcertbundle: ${token.certPath}` : basic,
  ].join("\n");
  await writeFile(join(dir.path, "config.yml"), config + "\n");
  const child = spawn("docker-registry", ["serve", join(dir.path, "config.yml")], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    await token?.close();
    await dir.cleanup();
  };
  try {
    await waitReady(`http://127.0.0.1:${port}/v2/`, child, () => log);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`, storageDir: join(dir.path, "data"), tokenRequests: () => token?.requests() ?? 0,
    authorizedTokenRequests: () => token?.authorizedRequests() ?? 0, stop,
  };
}

