// Shared helpers for benchmarks: servers run in child processes (so the load generator and the
// server do not share an event loop), load comes from autocannon, results are medians of
// alternating rounds so that drift on a shared machine hits floor and subject alike.
import autocannon from "autocannon";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { request } from "undici";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** Spawns `node script args…`, waits for its first stdout line (JSON), returns it with the child. */
export async function spawnServer(script, args = [], env = {}) {
  const started = performance.now();
  const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { child, info: JSON.parse(line), spawnMs: performance.now() - started };
}

export async function stop(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

export function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

export async function load({ url, headers = {}, connections = 50, duration = 5, pipelining = 1 }) {
  const result = await autocannon({ url, headers, connections, duration, pipelining });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

export const fmt = (n, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/**
 * What every bare-runc floor needs first: a runc root, `runc spec`'s config as a template, and a
 * fresh bridge with the given address. Returns the runc root and the template.
 */
export function prepareFloorHost(dir, bridge, address) {
  const run = (args) => execFileSync(args[0], args.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const runcRoot = join(dir, "runc-root");
  mkdirSync(runcRoot, { recursive: true });
  run(["runc", "spec", "--bundle", dir]);
  const template = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  try { run(["ip", "link", "del", bridge]); } catch { /* not there */ }
  run(["ip", "link", "add", bridge, "type", "bridge"]);
  run(["ip", "addr", "add", address, "dev", bridge]);
  run(["ip", "link", "set", bridge, "up"]);
  return { runcRoot, template };
}

/**
 * What the deployed-workload benches ask of a gateway, with an admin `key`: the API, the active
 * containers of a stub, waiting for a stub to scale to zero, calling an endpoint that answers
 * `{ ok: true }`, and stopping every container (cleanup).
 */
export function gatewayClient(gatewayUrl, key) {
  const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const api = async (method, path, body) => {
    const res = await request(`${gatewayUrl}${path}`, { method, headers: auth, ...(body && { body: JSON.stringify(body) }) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  const active = async (stubId) => (await api("GET", "/api/v1/container?active=true")).items.filter((c) => stubId === undefined || c.stubId === stubId);
  return {
    auth, api, active,
    async waitZero(stubId) {
      for (let i = 0; (await active(stubId)).length > 0; i++) {
        if (i > 600) throw new Error(`containers of ${stubId} still active after 30 s`);
        await sleep(50);
      }
    },
    async call(name) {
      const res = await request(`${gatewayUrl}/endpoint/${name}`, { method: "POST", headers: auth, body: "{}" });
      const text = await res.body.text();
      if (res.statusCode !== 200 || JSON.parse(text).ok !== true) throw new Error(`POST /endpoint/${name}: ${res.statusCode} ${text}`);
    },
    async stopAll() {
      try {
        const left = await api("GET", "/api/v1/container?active=true");
        await Promise.all(left.items.map((c) => api("POST", `/api/v1/container/${c.id}/stop`).catch(() => {})));
        for (let i = 0; i < 300 && (await api("GET", "/api/v1/container?active=true")).items.length > 0; i++) await sleep(50);
      } catch { /* the worker's close stops what is left */ }
    },
  };
}

/**
 * The secret a worker gave a runc container's runner (BETA9_RUNNER_SECRET, in its OCI config):
 * what the gateway shows the runner, needed to call the runner directly as a floor.
 */
export function runnerSecret(workerDir, containerId) {
  const config = JSON.parse(readFileSync(join(workerDir, "runc", "containers", containerId, "config.json"), "utf8"));
  const entry = config.process.env.find((e) => e.startsWith("BETA9_RUNNER_SECRET="));
  if (!entry) throw new Error(`container ${containerId} has no runner secret in its config`);
  return entry.slice("BETA9_RUNNER_SECRET=".length);
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/PID/stat. */
export function processCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "(comm) ": state is fields[0]; utime and stime are the stat file's 14th and 15th fields.
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

/** The pid of a runc container's first process (the runner), by `runc state`. */
export function containerPid(workerDir, containerId) {
  const state = JSON.parse(execFileSync("runc", ["--root", join(workerDir, "runc", "runc"), "state", containerId], { stdio: ["ignore", "pipe", "pipe"] }).toString());
  if (!state.pid) throw new Error(`container ${containerId} has no pid (${state.status})`);
  return state.pid;
}
