import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { render } from "ink-testing-library";
import type { LogLine } from "@beta9/protocol";
import type { AgentSnapshot } from "../agent.js";
import { waitFor } from "../testing.js";
import { App } from "./app.js";
import { formatDuration } from "./format.js";

const DOWN = "\u001B[B";
const UP = "\u001B[A";
const ESC = "\u001B";

/** A fixed agent view; the real Agent drives the same App in agent.test.tsx. */
class Source extends EventEmitter<{ change: []; log: [string, LogLine] }> {
  logs = new Map<string, LogLine[]>();
  constructor(public snap: AgentSnapshot) {
    super();
  }
  snapshot() {
    return this.snap;
  }
  containerLogs(id: string) {
    return this.logs.get(id) ?? [];
  }
}

const now = Date.now();
const source = new Source({
  status: "READY", machineId: "159ecc90", gateway: "http://100.72.101.23:1994", pool: "external", startedAt: now - (2 * 3600 + 34 * 60) * 1000,
  lastKeepaliveAt: now - 3000, workerConnected: true, cpuPercent: 18.2, memoryPercent: 56.1, diskPercent: 40, gpus: { total: 8, free: 6 },
  gpuTypes: [{ type: "H100", count: 8 }], keepalives: { ok: 10, failed: 0 }, registrations: 1,
  containers: [
    { id: "worker-abc123", label: "hello_beta9:hello", state: "RUNNING", gpuIndices: [0, 1], createdAt: now - 12_000 },
    { id: "worker-def456", label: "hello_beta9:hello", state: "EXITED", reason: "exited", exitCode: 0, gpuIndices: [], createdAt: now - 120_847, endedAt: now - 120_000 },
    { id: "worker-ghi789", label: "test_job:process", state: "EXITED", reason: "exited", exitCode: 1, gpuIndices: [], createdAt: now - 301_200, endedAt: now - 300_000 },
  ],
});
source.logs.set("worker-def456", [{ stream: "stdout", line: "def456 says hi", at: now }]);
source.logs.set("worker-ghi789", [{ stream: "stderr", line: "Traceback: ghi789 failed", at: now }]);

test("dashboard frame: status, gateway, pool, uptime, CPU, memory, GPUs, heartbeat and the containers", () => {
  const ui = render(<App source={source} colors={false} onQuit={() => {}} />);
  try {
    const frame = ui.lastFrame()!;
    for (const text of [
      "Beta9 Agent: 159ecc90", "Status: READY", "Gateway: 100.72.101.23:1994", "Pool: external", "Uptime: 2h 34m", "CPU: 18.2%",
      "Memory: 56.1%", "GPUs: 8 (6 free, 8x H100)", "Last Heartbeat: 3s ago", "WORKER CONTAINERS (1 running)",
      "worker-abc123", "RUNNING", "gpu 0,1", "COMPLETED", "847ms", "(2m 0s ago)", "FAILED", "1.2s",
    ]) assert.ok(frame.includes(text), `frame lacks ${JSON.stringify(text)}:\n${frame}`);
    assert.doesNotMatch(frame, /\u001B\[3\dm/, "no colours off a TTY");
    assert.match(frame, /› worker-abc123/);
  } finally {
    ui.unmount();
  }
});

test("arrows select, Enter opens the live log, Esc and q go back, q on the list quits", async () => {
  let quit = 0;
  const ui = render(<App source={source} colors={false} onQuit={() => { quit += 1; }} />);
  try {
    ui.stdin.write(DOWN);
    ui.stdin.write(DOWN);
    await waitFor("third row selected", () => ui.lastFrame()!.includes("› worker-ghi789"));
    ui.stdin.write(UP);
    await waitFor("second row selected", () => ui.lastFrame()!.includes("› worker-def456"));
    ui.stdin.write("\r");
    await waitFor("log of the second container", () => ui.lastFrame()!.includes("def456 says hi"));
    assert.match(ui.lastFrame()!, /LOG worker-def456/);
    // Live: a new line appears without reopening.
    source.logs.get("worker-def456")!.push({ stream: "stdout", line: "a later line", at: Date.now() });
    source.emit("log", "worker-def456", { stream: "stdout", line: "a later line", at: Date.now() });
    await waitFor("the new line", () => ui.lastFrame()!.includes("a later line"));
    ui.stdin.write(ESC);
    await waitFor("back to the list", () => ui.lastFrame()!.includes("WORKER CONTAINERS"));
    ui.stdin.write(DOWN);
    await waitFor("third row selected again", () => ui.lastFrame()!.includes("› worker-ghi789"));
    ui.stdin.write("\r");
    await waitFor("log of the third container", () => ui.lastFrame()!.includes("Traceback: ghi789 failed"));
    ui.stdin.write("q");
    await waitFor("q goes back from a log", () => ui.lastFrame()!.includes("WORKER CONTAINERS"));
    assert.equal(quit, 0);
    ui.stdin.write("q");
    await waitFor("q on the list quits", () => quit === 1);
  } finally {
    ui.unmount();
  }
});

test("durations read like the seed's dashboard", () => {
  assert.equal(formatDuration(847), "847ms");
  assert.equal(formatDuration(1200), "1.2s");
  assert.equal(formatDuration(12_000), "12s");
  assert.equal(formatDuration((2 * 3600 + 34 * 60) * 1000), "2h 34m");
});
