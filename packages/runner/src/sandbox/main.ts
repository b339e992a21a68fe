/**
 * The sandbox daemon: what a sandbox container runs (under the tiny init, so orphans are reaped).
 * Started by the worker with the runner's own node; listens on $PORT for the gateway and runs
 * processes, code and file operations inside the sandbox. Imports nothing outside Node.
 *
 * Environment: PORT; BETA9_SANDBOX_ROOT ("/" in an isolated container; unset with the process
 * runtime, where the daemon's working directory is the sandbox); BETA9_NODE_ARGV (JSON argv
 * prefix that starts this same node, for JavaScript); BETA9_SANDBOX_SECRET (the Bearer every
 * call but /health must carry; not passed on to the sandbox's processes).
 */
import { once } from "node:events";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { WORKDIR } from "./files.js";
import { createSandboxServer } from "./server.js";

function fail(message: string): never {
  process.stderr.write(`sandbox: ${message}\n`);
  process.exit(1);
}

const port = Number(process.env.PORT ?? "8000");
if (!Number.isInteger(port) || port < 1 || port > 65_535) fail(`PORT must be a port number, got ${process.env.PORT}`);
const root = process.env.BETA9_SANDBOX_ROOT ?? process.cwd();
let nodeArgv = [process.execPath];
if (process.env.BETA9_NODE_ARGV) {
  try {
    nodeArgv = JSON.parse(process.env.BETA9_NODE_ARGV) as string[];
  } catch {
    fail("BETA9_NODE_ARGV must be a JSON array of strings");
  }
}
// The daemon's own settings are not the user's business.
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) {
  if (v !== undefined && k !== "PORT" && k !== "BETA9_SANDBOX_ROOT" && k !== "BETA9_NODE_ARGV" && k !== "BETA9_SANDBOX_SECRET") env[k] = v;
}
const secret = process.env.BETA9_SANDBOX_SECRET;
delete process.env.BETA9_SANDBOX_SECRET;
mkdirSync(root === "/" ? WORKDIR : join(root, WORKDIR), { recursive: true });

const server = createSandboxServer({ root, nodeArgv, env, ...(secret && { secret }) });
server.keepAliveTimeout = 65_000; // longer than the gateway's idle pool sockets
server.listen(port, "0.0.0.0");
try {
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err as Error))]);
} catch (err) {
  fail(`cannot listen on 0.0.0.0:${port}: ${(err as Error).message}`);
}
process.stdout.write(`sandbox daemon listening on ${port}\n`);
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    server.killAll();
    server.close();
    process.exit(0);
  });
}
