// Log ingestion: a container on a local runc worker prints LINES numbered lines as fast as it can
// (`seq`, ~100 bytes each). The floor is the worker's own rate: lines read from the container and
// framed, from its first line to its last. The subject is the gateway (its own process, as
// `beta9 gateway` runs): from the worker's first line to the last line stored in logs.db and
// readable through GET /api/v1/logs. Ratio = gateway lines/s ÷ worker lines/s (1 = it keeps up).
// Alongside, read from the gateway's own /metrics: its event loop's longest and p99 delay during
// the flood (does it stall?), and the share of its event loop spent on logs. Rounds, medians.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { request } from "undici";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, median, spawnServer, stop } from "./lib.mjs";

const LINES = Number(process.env.BENCH_LOG_LINES ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "log ingestion", skipped: unavailable, print() { console.log(`\n## log ingestion: skipped (${unavailable})`); } };
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-logs-"));
  const { child, info } = await spawnServer(here("./servers/gateway.mjs"), [join(dir, "gw")]);
  const auth = { authorization: `Bearer ${info.adminKey}`, "content-type": "application/json" };
  const api = async (method, path, body) => {
    const res = await request(`${info.url}${path}`, { method, headers: auth, ...(body && { body: JSON.stringify(body) }) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
    return text.startsWith("{") ? JSON.parse(text) : text;
  };
  // Reading /metrics also resets the event-loop delay histogram (prom-client), so each read covers the time since the last.
  const metrics = async () => {
    const text = await api("GET", "/metrics");
    const value = (name) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    return { logSeconds: value("beta9_logs_flush_seconds_total"), lagMaxMs: value("beta9_gateway_nodejs_eventloop_lag_max_seconds") * 1000, lagP99Ms: value("beta9_gateway_nodejs_eventloop_lag_p99_seconds") * 1000 };
  };
  const token = (await api("POST", "/api/v1/token", { type: "worker" })).key;
  const started = await startWorker({ gatewayUrl: info.url, token, stateDir: join(dir, "worker"), logger: pino({ level: "warn" }), runtime: "runc", name: "logbench", subnet: "10.219.72.0/24", workerId: "logbench" });
  await started.connected;
  const rounds = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      let first;
      let last;
      const onLine = (containerId) => {
        if (containerId !== current) return;
        first ??= performance.now();
        last = performance.now();
      };
      let current;
      started.worker.events.on("log", onLine);
      const before = await metrics();
      const padding = "x".repeat(80);
      const c = await api("POST", "/api/v1/container", { command: ["seq", "-f", `%010.0f ${padding}`, "1", String(LINES)], cpu: 1, memory: "256Mi" });
      current = c.id;
      const lastLine = `${String(LINES).padStart(10, "0")} ${padding}`;
      let stored;
      for (let i = 0; ; i++) {
        const items = (await api("GET", `/api/v1/logs?containerId=${c.id}&limit=1`)).items;
        if (items[0]?.line === lastLine) {
          stored = performance.now();
          break;
        }
        if (i > 6000) throw new Error(`the last line was not stored within 60 s (last: ${items[0]?.line})`);
        await sleep(10);
      }
      started.worker.events.off("log", onLine);
      const during = await metrics();
      const workerMs = last - first;
      const gatewayMs = stored - first;
      rounds.push({
        workerRate: LINES / (workerMs / 1000), gatewayRate: LINES / (gatewayMs / 1000),
        lagMaxMs: during.lagMaxMs, lagP99Ms: during.lagP99Ms, logShare: (during.logSeconds - before.logSeconds) / (gatewayMs / 1000),
      });
      for (let i = 0; i < 600 && (await api("GET", `/api/v1/container/${c.id}`)).state !== "EXITED"; i++) await sleep(50);
    }
  } finally {
    await started.close(2000);
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
  const workerRate = median(rounds.map((r) => r.workerRate));
  const gatewayRate = median(rounds.map((r) => r.gatewayRate));
  return {
    name: "log ingestion: lines stored by the gateway per second, vs lines read by the worker per second",
    lines: LINES, rounds: ROUNDS, workerRate, gatewayRate, ratio: gatewayRate / workerRate, goal: ">= 0.9",
    lagMaxMs: median(rounds.map((r) => r.lagMaxMs)), lagP99Ms: median(rounds.map((r) => r.lagP99Ms)), logShare: median(rounds.map((r) => r.logShare)), all: rounds,
    print() {
      console.log(`\n## ${this.name}  (${fmt(LINES)} lines of ~100 bytes, ${ROUNDS} rounds, medians)`);
      console.log(`  floor   worker reads and frames          ${fmt(workerRate).padStart(10)} lines/s`);
      console.log(`  subject gateway stores (logs.db)         ${fmt(gatewayRate).padStart(10)} lines/s`);
      console.log(`  gateway event-loop delay, p99 / max      ${fmt(this.lagP99Ms, 1).padStart(10)} / ${fmt(this.lagMaxMs, 1)} ms`);
      console.log(`  gateway event loop spent encoding logs   ${fmt(this.logShare * 100, 1).padStart(10)} %  (the writes run on the writer thread)`);
      console.log(`  ratio ${fmt(this.ratio, 2)} (goal >= 0.9)`);
    },
  };
}
