// External machines: (1) keepalive load: 1,000 simulated agents at one keepalive per second each
// against the real gateway (SQLite, WAL): p50/p99 latency and the gateway's CPU; (2) the tunnel:
// the same small HTTP request straight to the "container" (floor) and through the gateway's
// loopback listener → the worker's multiplexed tunnel WebSocket → a machine worker's real tunnel
// code → the container (subject), alternating rounds in the same run. Goal for the tunnel: >= 0.5
// of the floor's throughput.
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fmt, load, median, spawnServer, stop } from "./lib.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const KEEPALIVE_SECONDS = Number(process.env.BENCH_KEEPALIVE_SECONDS ?? 20);

/** user+system CPU seconds of a process so far. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (CLK_TCK 100)
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-machines-"));
  const children = [];
  try {
    const gw = await spawnServer(here("./servers/gateway.mjs"), [join(dir, "data")]);
    children.push(gw.child);
    const url = gw.info.url;
    const admin = { authorization: `Bearer ${gw.info.adminKey}`, "content-type": "application/json" };
    const post = async (path, body, headers = admin) => {
      const res = await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return res.json();
    };

    // 1. Keepalive load.
    const tokens = [];
    for (let i = 0; i < AGENTS; i++) {
      const { token } = await post("/api/v1/machine", { pool: "default" });
      await post("/api/v1/machine/register", {
        hostname: `sim-${i}`, os: "linux", arch: "x64", agentVersion: "bench", cpuMillicores: 8000, memoryMiB: 16_384, gpus: [],
      }, { authorization: `Bearer ${token}`, "content-type": "application/json" });
      tokens.push(token);
    }
    const cpuBefore = cpuSeconds(gw.child.pid);
    const wallBefore = performance.now();
    const loadGen = await spawnServer(here("./servers/keepalive-load.mjs"), [JSON.stringify({ url, tokens, duration: KEEPALIVE_SECONDS })]);
    const keepalive = loadGen.info;
    const gatewayCpuPercent = ((cpuSeconds(gw.child.pid) - cpuBefore) / ((performance.now() - wallBefore) / 1000)) * 100;
    await stop(loadGen.child);

    // 2. Tunnel against direct.
    const upstream = await spawnServer(here("./servers/hello-http.mjs"));
    children.push(upstream.child);
    const { token } = await post("/api/v1/machine", { pool: "default" });
    const worker = await spawnServer(here("./servers/machine-worker.mjs"), [JSON.stringify({ gatewayUrl: url, token, upstreamPort: upstream.info.port })]);
    children.push(worker.child);
    const container = await post("/api/v1/container", { command: ["serve"], ports: [8000] });
    let address;
    for (let i = 0; i < 500 && !address; i++) {
      const c = await (await fetch(`${url}/api/v1/container/${container.id}`, { headers: admin })).json();
      address = c.state === "RUNNING" ? c.ports["8000"] : undefined;
      if (!address) await new Promise((r) => setTimeout(r, 10));
    }
    if (!address || address.port === upstream.info.port) throw new Error(`the container was not tunnelled: ${JSON.stringify(address)}`);
    const target = { direct: { url: `http://127.0.0.1:${upstream.info.port}/` }, tunnel: { url: `http://127.0.0.1:${address.port}/` } };
    await load({ ...target.direct, duration: 2 });
    await load({ ...target.tunnel, duration: 2 });
    const rounds = { direct: [], tunnel: [] };
    for (let i = 0; i < ROUNDS; i++) {
      for (const name of ["direct", "tunnel"]) rounds[name].push(await load({ ...target[name], duration: DURATION }));
    }
    const summary = (rs) => ({ rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) });
    const d = summary(rounds.direct);
    const t = summary(rounds.tunnel);
    return {
      name: "machines: 1,000 agents' keepalives; tunnel vs direct",
      keepalive: { agents: AGENTS, seconds: KEEPALIVE_SECONDS, ...keepalive, gatewayCpuPercent },
      floor: d,
      tunnel: t,
      ratio: t.rps / d.rps,
      goal: ">= 0.5",
      print() {
        console.log(`\n## ${this.name}`);
        console.log(`  keepalive: ${AGENTS} agents × 1/s for ${KEEPALIVE_SECONDS} s: ${keepalive.ok} ok, ${keepalive.errors} errors, p50 ${fmt(keepalive.p50, 2)} ms, p99 ${fmt(keepalive.p99, 2)} ms, gateway CPU ${fmt(gatewayCpuPercent, 1)}% of one core`);
        console.log(`  (50 connections, ${ROUNDS}×${DURATION}s alternating, medians)`);
        console.log(`  floor   direct to the container      ${fmt(d.rps).padStart(8)} req/s   p50 ${d.p50} ms   p99 ${d.p99} ms`);
        console.log(`  subject through the machine tunnel   ${fmt(t.rps).padStart(8)} req/s   p50 ${t.p50} ms   p99 ${t.p99} ms`);
        console.log(`  ratio ${fmt(this.ratio, 2)} (goal >= 0.5)`);
      },
    };
  } finally {
    for (const child of children.reverse()) await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}
