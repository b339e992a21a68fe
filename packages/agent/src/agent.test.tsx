/**
 * The agent against a real gateway (startGateway on a temp data dir, real sockets, real SQLite) and
 * a real worker (process runtime): register → ready with metrics, a container placed on the machine
 * shows in the agent (and its TUI) with its log, /metrics, then the gateway restarts and the agent
 * reconnects by itself.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { render } from "ink-testing-library";
import { pino } from "pino";
import { request } from "undici";
import { Value } from "@sinclair/typebox/value";
import { MachineKeepaliveBodySchema, type Machine, type MachineCreateResponse } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { Agent } from "./agent.js";
import { validateConfig, type AgentConfig } from "./config.js";
import { agentRegistry, serveMetrics } from "./metrics.js";
import { App } from "./tui/app.js";
import { freePort, waitFor } from "./testing.js";

const silent = pino({ level: "silent" });

describe("agent against a real gateway", () => {
  let dir: string;
  let port: number;
  let gateway: RunningGateway | undefined;
  let adminKey: string;
  let machine: Machine;
  let config: AgentConfig;
  let agent: Agent;

  const api = async (method: "GET" | "POST", path: string, body?: unknown, key = adminKey) => {
    const res = await request(`http://127.0.0.1:${port}${path}`, {
      method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  };
  const start = () => startGateway({ dataDir: join(dir, "gw"), port, logLevel: "silent", machineKeepaliveSeconds: 1 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "b9agent-e2e-"));
    port = await freePort();
    gateway = await start();
    adminKey = gateway.bootstrap!.token.key;
    const created = await api("POST", "/api/v1/machine", { pool: "default" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { machine: m, token } = created.body as MachineCreateResponse;
    assert.equal(m.state, "pending");
    machine = m;
    config = validateConfig({
      gateway: { host: "127.0.0.1", port }, machine: { token, hostname: "agent-under-test" }, pool: "default",
      keepaliveIntervalSeconds: 1, metricsPort: 0, runtime: "process", allowUnisolated: true, stateDir: join(dir, "state"), logLevel: "silent",
    }, dir, "agent-under-test");
    agent = new Agent({ config, logger: silent, backoffMinMs: 100, backoffMaxMs: 1000, workerName: "b9at" });
  });

  after(async () => {
    await agent?.stop(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("registers, runs its worker with the machine token, and becomes ready with its metrics", async () => {
    agent.start();
    await waitFor("agent READY with its worker connected", () => agent.snapshot().status === "READY" && agent.snapshot().workerConnected);
    const snap = agent.snapshot();
    assert.equal(snap.machineId, machine.id);
    const got = await waitFor("machine ready with metrics", async () => {
      const r = await api("GET", `/api/v1/machine/${machine.id}`);
      return r.body.state === "ready" && r.body.metrics && r.body.workerConnected ? (r.body as Machine) : undefined;
    });
    assert.equal(got.hostname, "agent-under-test");
    assert.equal(got.agentVersion, "0.1.0");
    assert.ok(got.cpuMillicores > 0 && got.memoryMiB > 0);
    assert.ok(Value.Check(MachineKeepaliveBodySchema, got.metrics), JSON.stringify(got.metrics));
    assert.ok(got.metrics!.memoryPercent > 0 && got.metrics!.diskPercent > 0, JSON.stringify(got.metrics));
    assert.ok(got.lastKeepaliveAt !== null);
  });

  test("a container placed on the machine shows in the agent and its TUI, with its log on Enter", async () => {
    const run = await api("POST", "/api/v1/container", { command: ["sh", "-c", "echo hello-from-the-agent; echo oops >&2; sleep 0.5; echo bye"], pool: "default" });
    assert.equal(run.status, 201, JSON.stringify(run.body));
    const id = run.body.id as string;
    const done = await waitFor("container exited in the agent's view", () => agent.snapshot().containers.find((c) => c.id === id && c.state === "EXITED"));
    assert.equal(done.exitCode, 0);
    assert.ok(done.endedAt !== undefined && done.endedAt >= done.createdAt);
    assert.deepEqual(agent.containerLogs(id).map((l) => `${l.stream}:${l.line}`).sort(), ["stderr:oops", "stdout:bye", "stdout:hello-from-the-agent"]);

    const ui = render(<App source={agent} colors={false} onQuit={() => {}} tickMs={200} />);
    try {
      const list = await waitFor("dashboard lists the container", () => (ui.lastFrame()?.includes(id.slice(0, 20)) ? ui.lastFrame() : undefined));
      assert.match(list!, /Status: READY/);
      assert.match(list!, new RegExp(`Beta9 Agent: ${machine.id}`));
      assert.match(list!, /COMPLETED/);
      ui.stdin.write("\r");
      const log = await waitFor("log view", () => (ui.lastFrame()?.includes("hello-from-the-agent") ? ui.lastFrame() : undefined));
      assert.match(log!, /LOG /);
      assert.match(log!, /bye/);
    } finally {
      ui.unmount();
    }
  });

  test("/metrics answers in Prometheus text format", async () => {
    const server = await serveMetrics(agentRegistry(agent), "127.0.0.1", 0);
    try {
      const res = await request(server.url);
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
      const text = await res.body.text();
      assert.match(text, /^# TYPE b9agent_up gauge\nb9agent_up 1$/m);
      assert.match(text, /^b9agent_ready 1$/m);
      assert.match(text, /^b9agent_worker_connected 1$/m);
      const ok = Number(text.match(/^b9agent_keepalives_total\{result="success"\} (\d+)$/m)?.[1]);
      assert.ok(ok >= 1, text);
      assert.ok(ok <= agent.snapshot().keepalives.ok, "the counter mirrors the agent's own count");
      assert.match(text, /^b9agent_keepalives_total\{result="failure"\} 0$/m);
      assert.match(text, /^b9agent_containers\{state="EXITED"\} 1$/m);
      assert.match(text, /^b9agent_containers\{state="RUNNING"\} 0$/m);
      assert.match(text, /^b9agent_last_keepalive_timestamp_seconds \d+(\.\d+)?$/m);
      assert.match(text, /^b9agent_cpu_percent [\d.]+$/m);
      assert.match(text, /^b9agent_memory_percent [\d.]+$/m);
      assert.match(text, /^b9agent_gpus\{kind="total"\} 0$/m);
      assert.match(text, /^b9agent_process_cpu_seconds_total /m);
      assert.equal((await request(server.url.replace("/metrics", "/other"))).statusCode, 404);
    } finally {
      await server.close();
    }
  });

  test("the gateway restarts: keepalives fail, the agent backs off, then reconnects by itself", async () => {
    const okBefore = agent.snapshot().keepalives.ok;
    await gateway!.close();
    gateway = undefined;
    await waitFor("agent notices the gateway is gone", () => agent.snapshot().status === "RECONNECTING" && !agent.snapshot().workerConnected);
    const failed = await waitFor("two failed keepalives", () => agent.snapshot().keepalives.failed >= 2 && agent.snapshot().keepalives.failed);
    assert.match(agent.snapshot().lastError ?? "", /unreachable/);
    gateway = await start();
    await waitFor("agent READY again with its worker reconnected", () => {
      const s = agent.snapshot();
      return s.status === "READY" && s.workerConnected && s.keepalives.ok > okBefore;
    });
    assert.ok(agent.snapshot().keepalives.failed >= failed);
    assert.equal(agent.snapshot().registrations, 1, "a restart alone does not expire the machine");
    const got = await waitFor("machine ready on the restarted gateway", async () => {
      const r = await api("GET", `/api/v1/machine/${machine.id}`);
      return r.body.state === "ready" && r.body.workerConnected ? (r.body as Machine) : undefined;
    });
    assert.equal(got.id, machine.id);
  });

  test("stop ends keepalives and the worker", async () => {
    await agent.stop(2000);
    assert.equal(agent.snapshot().status, "STOPPED");
    await waitFor("worker disconnected on the gateway", async () => {
      const r = await api("GET", `/api/v1/machine/${machine.id}`);
      return r.body.workerConnected === false;
    });
  });
});
