/**
 * Reliability: a container that prints very long lines (60,000 characters each) must not cut its
 * worker's connection to the gateway (one message over the gateway's 4 MiB limit used to drop the
 * whole control channel, losing most lines and every other container's state on that worker).
 * Real gateway, real worker (runc where it can run, else the process runtime with opt-in), real
 * container; every line arrives, split into pieces of at most 16 Ki characters, in order.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { pino } from "pino";
import { Client } from "beta9";
import { startGateway } from "@beta9/gateway";
import { MAX_LOG_LINE_CHARS, runcUnavailableReason, splitLogLine, startWorker } from "@beta9/worker";

const LINES = 200;
const WIDTH = 60_000;

test("a 60,000-character log flood keeps the worker connected and loses no line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-logflood-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent" });
  const seen: string[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { seen.push(String(chunk)); done(); } });
  const runc = runcUnavailableReason() === undefined;
  const worker = await startWorker({
    gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), logger: pino({ level: "warn" }, sink),
    runtime: runc ? "runc" : "process", allowUnisolated: !runc, name: "flood", subnet: "10.219.93.0/24", workerId: "flood",
  });
  const client = new Client({ gateway: gateway.url, token: gateway.bootstrap!.token.key });
  after(async () => {
    await client.close();
    await worker.close(2000);
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await worker.connected;
  // Waits a second so the follow below starts before the first line.
  const script = `sleep 1; i=0; while [ $i -lt ${LINES} ]; do printf '%05d' $i; head -c ${WIDTH - 5} /dev/zero | tr '\\0' x; echo; i=$((i+1)); done`;
  const container = await client.request<{ id: string }>("POST", "/container", { body: { command: ["sh", "-c", script], cpu: 0.5, memory: "256Mi" } });
  let text = "";
  let pieces = 0;
  let longest = 0;
  let end: { reason: string | null; exitCode: number | null } | undefined;
  for await (const event of client.followContainer(container.id)) {
    if (event.kind === "log" && event.line.stream === "stdout") {
      text += event.line.line.length < MAX_LOG_LINE_CHARS ? `${event.line.line}\n` : event.line.line;
      pieces += 1;
      longest = Math.max(longest, event.line.line.length);
    }
    if (event.kind === "end") end = event.container;
  }
  assert.deepEqual(end && [end.reason, end.exitCode], ["exited", 0]);
  assert.ok(longest <= MAX_LOG_LINE_CHARS, `a piece of ${longest} characters`);
  const lines = text.trimEnd().split("\n");
  assert.equal(lines.length, LINES, `${pieces} pieces made ${lines.length} lines`);
  lines.forEach((line, i) => assert.equal(line, `${String(i).padStart(5, "0")}${"x".repeat(WIDTH - 5)}`, `line ${i}`));
  assert.ok(!seen.some((l) => /connection lost/.test(l)), `the worker lost its connection:\n${seen.join("")}`);
});

test("splitLogLine cuts long lines into bounded pieces, never inside a surrogate pair", () => {
  assert.deepEqual(splitLogLine("abc", 2), ["ab", "c"]);
  assert.deepEqual(splitLogLine("short"), ["short"]);
  const emoji = "a😀b"; // the emoji is two UTF-16 units
  assert.deepEqual(splitLogLine(emoji, 2), ["a", "😀", "b"]);
  assert.equal(splitLogLine("x".repeat(50_000)).join(""), "x".repeat(50_000));
});
