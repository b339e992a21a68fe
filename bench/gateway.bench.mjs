// Gateway API throughput for an authenticated read (GET /api/v1/deployment: token lookup,
// workspace-scoped SQLite query, schema serialization) against a bare fastify route that returns
// the same JSON, same run; plus idle RSS and start-to-health time.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fmt, load, median, rssMiB, spawnServer, stop } from "./lib.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const DEPLOYMENTS = 10;

async function waitHealthy(url, started) {
  for (;;) {
    try {
      const res = await fetch(`${url}/api/v1/health`);
      if (res.ok) return performance.now() - started;
    } catch {}
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-"));
  try {
    const started = performance.now();
    const gw = await spawnServer(here("./servers/gateway.mjs"), [join(dir, "data")]);
    const healthMs = await waitHealthy(gw.info.url, started);
    const auth = { authorization: `Bearer ${gw.info.adminKey}`, "content-type": "application/json" };
    for (let i = 0; i < DEPLOYMENTS; i++) {
      const stub = await (await fetch(`${gw.info.url}/api/v1/stub`, { method: "POST", headers: auth, body: JSON.stringify({ name: `svc-${i}`, type: "endpoint/deployment", config: { cpu: 1 + i } }) })).json();
      await fetch(`${gw.info.url}/api/v1/deployment`, { method: "POST", headers: auth, body: JSON.stringify({ stubId: stub.stub.id }) });
    }
    const body = await (await fetch(`${gw.info.url}/api/v1/deployment`, { headers: auth })).text();
    const bodyFile = join(dir, "body.json");
    writeFileSync(bodyFile, body);
    await new Promise((r) => setTimeout(r, 1000));
    const gatewayIdleRss = rssMiB(gw.child.pid);

    const floor = await spawnServer(here("./servers/bare-fastify.mjs"), [bodyFile]);
    await new Promise((r) => setTimeout(r, 1000));
    const floorIdleRss = rssMiB(floor.child.pid);
    const target = { floor: { url: `${floor.info.url}/api/v1/deployment` }, gateway: { url: `${gw.info.url}/api/v1/deployment`, headers: { authorization: auth.authorization } } };
    // Warm both up (JIT), then alternate rounds.
    await load({ ...target.floor, duration: 2 });
    await load({ ...target.gateway, duration: 2 });
    const rounds = { floor: [], gateway: [] };
    for (let i = 0; i < ROUNDS; i++) {
      for (const name of ["floor", "gateway"]) rounds[name].push(await load({ ...target[name], duration: DURATION }));
    }
    await stop(floor.child);
    await stop(gw.child);
    const summary = (rs) => ({ rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) });
    const f = summary(rounds.floor);
    const g = summary(rounds.gateway);
    return {
      name: "gateway: authenticated GET /api/v1/deployment vs bare fastify (same JSON)",
      responseBytes: body.length,
      floor: f,
      gateway: g,
      ratio: g.rps / f.rps,
      goal: ">= 0.7",
      idleRssMiB: { gateway: gatewayIdleRss, bareFastify: floorIdleRss },
      startToHealthMs: healthMs,
      print() {
        console.log(`\n## ${this.name}  (${DEPLOYMENTS} deployments, ${body.length} bytes, 50 connections, ${ROUNDS}×${DURATION}s alternating, medians)`);
        console.log(`  floor   bare fastify     ${fmt(f.rps).padStart(8)} req/s   p50 ${f.p50} ms   p99 ${f.p99} ms`);
        console.log(`  subject beta9 gateway    ${fmt(g.rps).padStart(8)} req/s   p50 ${g.p50} ms   p99 ${g.p99} ms`);
        console.log(`  ratio ${fmt(this.ratio, 2)} (goal >= 0.7)`);
        console.log(`  idle RSS: gateway ${fmt(gatewayIdleRss, 1)} MiB, bare fastify ${fmt(floorIdleRss, 1)} MiB`);
        console.log(`  process spawn → first health 200: ${fmt(healthMs)} ms`);
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
