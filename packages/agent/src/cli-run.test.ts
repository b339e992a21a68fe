/**
 * The `b9agent run --no-tui` process against a real gateway: it joins, serves /metrics, runs a
 * container placed on it, and on SIGTERM stops that container and exits 0.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { parse } from "yaml";
import { startGateway } from "@beta9/gateway";
import { freePort, waitFor } from "./testing.js";

const MAIN = join(dirname(fileURLToPath(import.meta.url)), "main.js");

test("b9agent run --no-tui joins, serves /metrics, and SIGTERM stops its container and exits 0", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "b9agent-cli-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", machineKeepaliveSeconds: 1 });
  t.after(async () => {
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const key = gateway.bootstrap!.token.key;
  const api = async (method: "GET" | "POST", path: string, body?: unknown) => {
    const res = await request(`${gateway.url}${path}`, {
      method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  };
  const created = await api("POST", "/api/v1/machine", { pool: "default" });
  const machineId = created.body.machine.id as string;
  const env = { ...process.env, B9AGENT_HOME: join(dir, "home") };
  const metricsPort = await freePort();
  const init = spawn(process.execPath, [MAIN, "init", "--gateway", gateway.url.replace("http://", ""), "--token", created.body.token, "--pool", "default", "--metrics-port", String(metricsPort)], { env });
  assert.equal(await new Promise((r) => init.on("exit", r)), 0);
  for (const [k, v] of [["runtime", "process"], ["allowUnisolated", "true"], ["keepaliveIntervalSeconds", "1"]]) {
    const set = spawn(process.execPath, [MAIN, "config", "set", k!, v!], { env });
    assert.equal(await new Promise((r) => set.on("exit", r)), 0);
  }

  const agent = spawn(process.execPath, [MAIN, "run", "--no-tui"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  agent.stderr.on("data", (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => agent.on("exit", (code) => resolve(code)));
  t.after(() => { if (agent.exitCode === null) agent.kill("SIGKILL"); });

  await waitFor("machine ready with its worker", async () => {
    const r = await api("GET", `/api/v1/machine/${machineId}`);
    return r.body.state === "ready" && r.body.workerConnected;
  });
  // The id learned at registration is saved for `config show`.
  const saved = parse(readFileSync(join(dir, "home", "config.yaml"), "utf8")) as { machine: { id: string } };
  assert.equal(saved.machine.id, machineId);
  const metrics = await (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body.text();
  assert.match(metrics, /^b9agent_up 1$/m);

  const run = await api("POST", "/api/v1/container", { command: ["sleep", "60"], pool: "default" });
  assert.equal(run.status, 201);
  await waitFor("container running", async () => (await api("GET", `/api/v1/container/${run.body.id}`)).body.state === "RUNNING");
  assert.match(await (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body.text(), /^b9agent_containers\{state="RUNNING"\} 1$/m);

  agent.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  const container = (await api("GET", `/api/v1/container/${run.body.id}`)).body;
  assert.equal(container.state, "EXITED");
  assert.equal(container.reason, "stopped");
  assert.match(stderr, /stopping: containers get their grace period/);
});
