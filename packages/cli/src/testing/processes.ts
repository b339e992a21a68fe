/**
 * Real `beta9 gateway`, `beta9 worker` and `beta9 deploy` processes for the multi-gateway e2e
 * tests: each suite makes one Processes for its temp dir and calls killAll() in after().
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../main.js", import.meta.url));
export const AGENT_MAIN = fileURLToPath(new URL("../../../agent/dist/main.js", import.meta.url));

export interface GatewayProcess {
  child: ChildProcess;
  url: string;
  output(): string;
}

export class Processes {
  readonly children: ChildProcess[] = [];
  readonly env: NodeJS.ProcessEnv;

  constructor(dir: string) {
    this.env = { ...process.env, NO_COLOR: "1", BETA9_CONFIG_DIR: join(dir, "cfg") };
    delete this.env.BETA9_STORE;
    delete this.env.BETA9_OBJECTS;
  }

  /** A child tracked for killAll(), its stdout and stderr collected. */
  spawn(file: string, args: string[], env: NodeJS.ProcessEnv = this.env): { child: ChildProcess; output(): string } {
    const child = spawn(process.execPath, [file, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.children.push(child);
    let output = "";
    child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    return { child, output: () => output };
  }

  /** Starts `beta9 gateway` and resolves once it printed its URL (or rejects with its output if it exits first). */
  gateway(args: string[], env: NodeJS.ProcessEnv = this.env): Promise<GatewayProcess> {
    const { child, output } = this.spawn(CLI, ["gateway", "--port", "0", "--log-level", "error", ...args], env);
    return new Promise((resolve, reject) => {
      const check = () => {
        const url = /^gateway: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(output())?.[1];
        if (!url) return;
        child.stdout!.off("data", check);
        resolve({ child, url, output });
      };
      child.stdout!.on("data", check);
      child.once("exit", (code) => reject(new Error(`beta9 gateway exited (${code}) before it listened:\n${output()}`)));
    });
  }

  /** Runs a CLI command (or `file`'s, e.g. AGENT_MAIN) to its end (killed past `ms`): its exit code and output. */
  async run(args: string[], env: NodeJS.ProcessEnv = this.env, ms = 120_000, file = CLI): Promise<{ code: number | null; output: string }> {
    const { child, output } = this.spawn(file, args, env);
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
    clearTimeout(timer);
    return { code, output: output() };
  }

  /**
   * Stops every child still running: SIGTERM first (a worker then stops its containers: the
   * process runtime's run in process groups of their own and outlive a SIGKILLed worker), SIGKILL
   * past `ms`.
   */
  async stopAll(ms = 15_000): Promise<void> {
    await Promise.all(this.children.map((child) => stop(child, ms)));
  }
}

/** SIGTERM, then SIGKILL past `ms`: its exit code, or null when a signal ended it. */
export async function stop(child: ChildProcess, ms = 20_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** One API call with the token: status and parsed JSON body. */
export async function call(url: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url + path, {
    method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** Polls `check` every 50 ms until it holds; throws naming `what` past `ms`. Resolves with the ms it took. */
export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 15_000, detail: () => string = () => ""): Promise<number> {
  const t0 = Date.now();
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}
