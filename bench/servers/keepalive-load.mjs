// Simulated agents in their own process: each sends POST /api/v1/machine/keepalive with its own
// machine token once per second (phases spread evenly), for `duration` seconds.
// argv[2]: JSON { url, tokens, duration }. Prints one JSON line: sent, errors, p50/p99 ms.
import { Pool } from "undici";

const o = JSON.parse(process.argv[2]);
const pool = new Pool(o.url, { connections: 64, pipelining: 1 });
const body = JSON.stringify({ cpuPercent: 12.5, memoryPercent: 40, diskPercent: 70, gpus: { total: 0, free: 0 }, containers: 1 });
const latencies = [];
let errors = 0;
const end = Date.now() + o.duration * 1000;
const timers = o.tokens.map((token, i) => setTimeout(function tick() {
  if (Date.now() >= end) return;
  const started = performance.now();
  pool.request({ method: "POST", path: "/api/v1/machine/keepalive", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body })
    .then(async (res) => {
      await res.body.dump();
      if (res.statusCode === 200) latencies.push(performance.now() - started);
      else errors += 1;
    }, () => { errors += 1; });
  timers[i] = setTimeout(tick, 1000);
}, (1000 * i) / o.tokens.length));
await new Promise((r) => setTimeout(r, o.duration * 1000 + 2000));
const sorted = Float64Array.from(latencies).sort();
const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
process.stdout.write(`${JSON.stringify({ sent: latencies.length + errors, ok: latencies.length, errors, p50: pct(50), p99: pct(99) })}\n`);
await pool.close();
