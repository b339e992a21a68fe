import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { test } from "node:test";
import { waitGone } from "../../testing/processes.js";
import { runRuntimeConformance } from "../conformance.js";
import { PROCESS_RUNTIME_WARNING, ProcessRuntime } from "./process-runtime.js";

/** The process runtime's only host objects are its b9proc-<id>-* temp dirs. */
function leftoverTempDirs(id: string): string[] {
  return readdirSync(tmpdir()).filter((entry) => entry.startsWith(`b9proc-${id}-`));
}

runRuntimeConformance("process", () => new ProcessRuntime(), () => ({}), { leftovers: leftoverTempDirs });

test("process runtime says loudly that it isolates nothing", () => {
  const runtime = new ProcessRuntime();
  assert.equal(runtime.isolates, false);
  assert.equal(runtime.warning, PROCESS_RUNTIME_WARNING);
  assert.match(runtime.warning, /isolates NOTHING/);
  assert.match(runtime.warning, /memory, cpu and pids limits are NOT enforced/);
  assert.match(runtime.warning, /filesystem/);
});

test("process runtime: workdir is a fresh temp dir, removed at exit; PATH comes from the host", async () => {
  const runtime = new ProcessRuntime();
  const lines: string[] = [];
  const handle = await runtime.start(
    { id: "proc-workdir", lowerDirs: [], command: ["sh", "-c", 'pwd; echo "$PATH"; touch made-here'], env: {}, cpuMillicores: 100, memoryMiB: 64 },
    (_stream, line) => lines.push(line),
  );
  assert.deepEqual(await handle.exited, { exitCode: 0, reason: "exited" });
  const [workdir, path] = lines;
  assert.ok(workdir?.startsWith(tmpdir()) && workdir.includes("b9proc-proc-workdir-"), String(workdir));
  assert.equal(path, process.env.PATH);
  assert.equal(existsSync(workdir ?? ""), false, "workdir removed at exit");
  await runtime.close();
});

test("process runtime: PORT is remapped to a free host port on 127.0.0.1", async () => {
  const runtime = new ProcessRuntime();
  const lines: string[] = [];
  const handle = await runtime.start(
    { id: "proc-port", lowerDirs: [], command: ["sh", "-c", 'echo "$PORT"'], env: {}, cpuMillicores: 100, memoryMiB: 64, ports: [8000, 9000] },
    (_stream, line) => lines.push(line),
  );
  await handle.exited;
  const mapped = handle.ports[8000];
  assert.equal(mapped?.host, "127.0.0.1");
  assert.equal(String(mapped?.port), lines[0]);
  assert.notEqual(mapped?.port, 8000);
  assert.deepEqual(handle.ports[9000], { host: "127.0.0.1", port: 9000 }, "only PORT can be remapped");
  await runtime.close();
});

test("process runtime: stop kills the whole process group", async () => {
  const runtime = new ProcessRuntime();
  const lines: string[] = [];
  // A background grandchild that would outlive its parent if only the parent were signalled.
  const script = "sleep 30 & echo $!; wait";
  const handle = await runtime.start(
    { id: "proc-group", lowerDirs: [], command: ["sh", "-c", script], env: {}, cpuMillicores: 100, memoryMiB: 64 },
    (_stream, line) => lines.push(line),
  );
  while (lines.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const grandchild = Number(lines[0]);
  await handle.stop(2_000);
  assert.ok(await waitGone(grandchild), "the background sleep is gone too");
  await runtime.close();
});
