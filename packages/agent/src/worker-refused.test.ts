/**
 * A worker the gateway refuses at the handshake (its machine is not registered: pending or expired)
 * keeps retrying with backoff and joins once the agent has registered the machine — the path a
 * machine takes when its link comes back after the gateway expired it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { startWorker } from "@beta9/worker";
import { startGateway } from "@beta9/gateway";
import { GatewayClient } from "./gateway-client.js";
import { waitFor } from "./testing.js";

test("a refused worker retries and joins once its machine registers", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "b9agent-refused-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", machineExpirySeconds: 3 });
  t.after(async () => {
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const res = await request(`${gateway.url}/api/v1/machine`, {
    method: "POST", headers: { authorization: `Bearer ${gateway.bootstrap!.token.key}`, "content-type": "application/json" },
    body: JSON.stringify({ pool: "default" }),
  });
  const { machine, token } = (await res.body.json()) as { machine: { id: string }; token: string };
  const client = new GatewayClient(gateway.url, token);
  const register = () => client.register({ hostname: "refused", os: "linux", arch: "x64", agentVersion: "test", cpuMillicores: 1000, memoryMiB: 1024, gpus: [] });
  const state = async () => {
    const r = await request(`${gateway.url}/api/v1/machine/${machine.id}`, { headers: { authorization: `Bearer ${gateway.bootstrap!.token.key}` } });
    return ((await r.body.json()) as { state: string }).state;
  };
  // Registered, then silent: the gateway expires it, and refuses its worker from then on.
  await register();
  await waitFor("machine expired", async () => (await state()) === "expired");
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
  const worker = await startWorker({
    gatewayUrl: gateway.url, token, stateDir: join(dir, "worker"), logger: pino({ level: "info" }, sink), runtime: "process", allowUnisolated: true, workerId: machine.id,
  });
  t.after(() => worker.close(1000));
  await waitFor("two refused handshakes", () => lines.filter((l) => l.includes("refused this worker")).length >= 2);
  assert.equal(worker.worker.connected, false);
  // What the agent does: register again and keep alive; the refused worker joins by itself.
  await register();
  const keepalive = setInterval(() => void client.keepalive({ cpuPercent: 1, memoryPercent: 1, diskPercent: 1, gpus: { total: 0, free: 0 }, containers: 0 }).catch(() => {}), 500);
  t.after(() => clearInterval(keepalive));
  await worker.connected;
  assert.equal(worker.worker.connected, true);
});
