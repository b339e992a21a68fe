/**
 * The link to a real gateway is cut long enough for the gateway to expire the machine; when it
 * comes back the agent's keepalive is refused (MACHINE_NOT_REGISTERED), it registers again by
 * itself and is ready, its worker reconnected, without a restart.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { startGateway } from "@beta9/gateway";
import { Agent } from "./agent.js";
import { validateConfig } from "./config.js";
import { linkRelay, waitFor } from "./testing.js";

test("expired during an outage → re-registers and is ready again without a restart", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "b9agent-expiry-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", machineExpirySeconds: 3 });
  const relay = await linkRelay(Number(new URL(gateway.url).port));
  let agent: Agent | undefined;
  t.after(async () => {
    await agent?.stop(2000);
    await relay.close();
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const key = gateway.bootstrap!.token.key;
  const api = async (method: "GET" | "POST", path: string, body?: unknown) => {
    const res = await request(`${gateway.url}${path}`, {
      method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    return (await res.body.json()) as any;
  };
  const created = await api("POST", "/api/v1/machine", { pool: "default" });
  const id = created.machine.id as string;
  const config = validateConfig({
    gateway: { host: "127.0.0.1", port: relay.port }, machine: { token: created.token }, pool: "default", keepaliveIntervalSeconds: 60,
    metricsPort: 0, runtime: "process", allowUnisolated: true, stateDir: join(dir, "state"), logLevel: "silent",
  }, dir, "expiring");
  agent = new Agent({ config, logger: pino({ level: "silent" }), backoffMinMs: 100, backoffMaxMs: 500 });
  agent.start();
  await waitFor("ready", async () => agent!.snapshot().status === "READY" && (await api("GET", `/api/v1/machine/${id}`)).state === "ready");
  // The gateway's 1 s interval (a third of the 3 s expiry) wins over the configured 60 s.
  const ok = agent.snapshot().keepalives.ok;
  await waitFor("keepalives at the gateway's pace", () => agent!.snapshot().keepalives.ok >= ok + 2);

  const before = agent.snapshot();
  relay.cut();
  await waitFor("machine expired on the gateway", async () => (await api("GET", `/api/v1/machine/${id}`)).state === "expired");
  assert.ok(agent.snapshot().keepalives.failed > before.keepalives.failed, "keepalives failed while the link was cut");
  relay.restore();
  const back = await waitFor("ready again with the worker connected", async () => {
    const m = await api("GET", `/api/v1/machine/${id}`);
    return agent!.snapshot().status === "READY" && m.state === "ready" && m.workerConnected ? m : undefined;
  });
  assert.equal(back.id, id);
  assert.equal(agent.snapshot().machineId, id);
  assert.ok(agent.snapshot().registrations > before.registrations, "registered again after the expiry");
});
