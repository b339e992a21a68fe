/**
 * The behaviour every Runtime must show, as node:test tests: call runRuntimeConformance() from a
 * runtime's own test file. Workloads use only `sh`, `seq` and `node`, which both the host and the
 * runc test rootfs (host /usr bound read-only) provide.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { median, waitForHttp200 } from "../testing/http.js";
import type { ContainerExit, ContainerHandle, ContainerSpec, LogStream, Runtime } from "./types.js";

/** What a runtime-specific test file supplies besides the runtime itself. */
export type SpecBase = Partial<Omit<ContainerSpec, "id" | "command">>;

export interface ConformanceOptions {
  /** Host objects still present for a container after it exited (paths, netns, …); [] when clean. */
  leftovers?: (id: string) => Promise<string[]> | string[];
  /** Cold starts to time for the start → first-HTTP-200 figure (default 5). */
  coldStartRuns?: number;
}

/** Collects a container's log lines per stream, and lets a test wait for one. */
class LogCollector {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  private waiters: Array<{ text: string; resolve: () => void }> = [];

  readonly sink = (stream: LogStream, line: string): void => {
    this[stream].push(line);
    this.waiters = this.waiters.filter((waiter) => (line.includes(waiter.text) ? (waiter.resolve(), false) : true));
  };

  waitFor(text: string, timeoutMs = 10_000): Promise<void> {
    if ([...this.stdout, ...this.stderr].some((line) => line.includes(text))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line containing ${JSON.stringify(text)} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }
}

/**
 * A node HTTP server on $PORT. It exits on SIGTERM itself: as a container's PID 1 it would
 * otherwise ignore SIGTERM (the kernel drops default-action signals for a namespace's init).
 */
const NODE_HTTP_SERVER =
  "process.on('SIGTERM',()=>process.exit(0));" +
  "require('http').createServer((q,s)=>s.end('hello '+(process.env.B9_WHO||'nobody'))).listen(Number(process.env.PORT),()=>console.log('listening'))";

export function runRuntimeConformance(
  name: string,
  makeRuntime: () => Runtime | Promise<Runtime>,
  makeSpecBase: (id: string) => SpecBase,
  options: ConformanceOptions = {},
): void {
  describe(`${name} runtime conformance`, { timeout: 180_000 }, () => {
    let runtime: Runtime;
    const handles: ContainerHandle[] = [];
    const runTag = randomBytes(2).toString("hex");
    let counter = 0;
    const newId = (label: string): string => `cf-${label}-${runTag}-${++counter}`;

    const spec = (id: string, command: string[], overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
      id,
      lowerDirs: [],
      command,
      env: {},
      cpuMillicores: 1000,
      memoryMiB: 256,
      ...makeSpecBase(id),
      ...overrides,
    });

    const start = async (id: string, command: string[], overrides: Partial<ContainerSpec> = {}) => {
      const logs = new LogCollector();
      const handle = await runtime.start(spec(id, command, overrides), logs.sink);
      handles.push(handle);
      return { handle, logs };
    };

    const assertClean = async (id: string): Promise<void> => {
      assert.ok(!runtime.running().includes(id), `${id} still in running()`);
      if (options.leftovers) assert.deepEqual(await options.leftovers(id), [], `leftovers of ${id}`);
    };

    before(async () => {
      runtime = await makeRuntime();
    });

    after(async () => {
      // Even when a test failed midway: stop what it left, then release shared resources.
      await Promise.all(handles.map((handle) => handle.stop(500)));
      await runtime.close(500);
      await runtime.reap();
    });

    test("stdout and stderr arrive line by line, in order, with a final partial line", async () => {
      const id = newId("logs");
      const script = 'echo one; echo two >&2; echo three; printf "four-no-newline"; printf "err-tail" >&2';
      const { handle, logs } = await start(id, ["sh", "-c", script]);
      assert.deepEqual(await handle.exited, { exitCode: 0, reason: "exited" });
      assert.deepEqual(logs.stdout, ["one", "three", "four-no-newline"]);
      assert.deepEqual(logs.stderr, ["two", "err-tail"]);
      await assertClean(id);
    });

    test("a 10k-line burst loses no line", async () => {
      const id = newId("burst");
      const { handle, logs } = await start(id, ["seq", "1", "10000"]);
      assert.equal((await handle.exited).exitCode, 0);
      assert.equal(logs.stdout.length, 10_000);
      logs.stdout.forEach((line, index) => assert.equal(line, String(index + 1)));
      await assertClean(id);
    });

    test("exit codes 0, 3 and 42 are reported with reason 'exited'", async () => {
      const results = await Promise.all(
        [0, 3, 42].map(async (code) => {
          const { handle } = await start(newId(`exit${code}`), ["sh", "-c", `exit ${code}`]);
          return handle.exited;
        }),
      );
      assert.deepEqual(results, [0, 3, 42].map((exitCode): ContainerExit => ({ exitCode, reason: "exited" })));
    });

    test("env reaches the process", async () => {
      const { handle, logs } = await start(newId("env"), ["sh", "-c", 'echo "$B9_GREETING|$B9_OTHER"'], {
        env: { ...makeSpecBase("x").env, B9_GREETING: "hello world", B9_OTHER: "a=b" },
      });
      await handle.exited;
      assert.deepEqual(logs.stdout, ["hello world|a=b"]);
    });

    test("an HTTP server is reachable at handle.ports[8000]; PORT is set", async (t) => {
      const id = newId("http");
      const { handle, logs } = await start(id, ["node", "-e", NODE_HTTP_SERVER], {
        ports: [8000],
        env: { ...makeSpecBase(id).env, B9_WHO: "conformance" },
      });
      const target = handle.ports[8000];
      assert.ok(target, "ports[8000] is reported");
      const response = await waitForHttp200(target);
      assert.equal(response.body, "hello conformance");
      assert.equal(typeof handle.pid, "number");
      await logs.waitFor("listening");
      assert.equal((await handle.stop(5_000)).reason, "stopped");
      await assertClean(id);
      t.diagnostic(`${name}: reached at ${target.host}:${target.port}`);
    });

    test("cold start: start() → first HTTP 200", async (t) => {
      const timings: number[] = [];
      for (let run = 0; run < (options.coldStartRuns ?? 5); run++) {
        const id = newId("cold");
        const began = performance.now();
        const { handle } = await start(id, ["node", "-e", NODE_HTTP_SERVER], { ports: [8000] });
        await waitForHttp200(handle.ports[8000]!);
        timings.push(performance.now() - began);
        await handle.stop(1_000);
      }
      const figures = timings.map((ms) => ms.toFixed(1)).join(", ");
      t.diagnostic(`${name} cold start → first HTTP 200: median ${median(timings).toFixed(1)} ms (runs: ${figures})`);
    });

    test("stop() sends SIGTERM first: a handler runs and the exit is 'stopped'", async () => {
      const id = newId("term");
      const script = 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.05; done';
      const { handle, logs } = await start(id, ["sh", "-c", script]);
      await logs.waitFor("ready");
      const began = Date.now();
      const exit = await handle.stop(20_000);
      assert.deepEqual(exit, { exitCode: 0, reason: "stopped" });
      assert.ok(Date.now() - began < 10_000, "the handler ended it, not the SIGKILL after the grace period");
      assert.ok(logs.stdout.includes("got-term"), `stdout: ${JSON.stringify(logs.stdout)}`);
      assert.deepEqual(await handle.stop(), exit, "stop() is idempotent");
      await assertClean(id);
    });

    test("stop() SIGKILLs after graceMs when SIGTERM is ignored", async () => {
      const id = newId("kill");
      const { handle, logs } = await start(id, ["sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 0.05; done']);
      await logs.waitFor("ready");
      const began = Date.now();
      const exit = await handle.stop(400);
      const elapsed = Date.now() - began;
      assert.deepEqual(exit, { exitCode: 137, reason: "stopped" });
      assert.ok(elapsed >= 350, `waited the grace period (${elapsed} ms)`);
      assert.ok(elapsed < 10_000, `then killed promptly (${elapsed} ms)`);
      await assertClean(id);
    });

    test("a nonexistent command fails clearly and leaves nothing behind", async () => {
      const id = newId("enoent");
      const logs = new LogCollector();
      let failure: string | undefined;
      try {
        const handle = await runtime.start(spec(id, ["b9-no-such-command", "arg"]), logs.sink);
        handles.push(handle);
        const exit = await handle.exited;
        assert.equal(exit.reason, "failed");
        failure = exit.message;
      } catch (error) {
        failure = (error as Error).message;
      }
      assert.match(failure ?? "", /b9-no-such-command/);
      await assertClean(id);
    });

    test("running() lists started containers until they exit", async () => {
      const id = newId("running");
      const { handle } = await start(id, ["sh", "-c", "while :; do sleep 0.05; done"]);
      assert.ok(runtime.running().includes(id));
      await handle.stop(200);
      await assertClean(id);
    });

    test("10 containers started in parallel all work and all clean up", async () => {
      const ids = Array.from({ length: 10 }, () => newId("par"));
      const started = await Promise.all(ids.map((id) => start(id, ["node", "-e", NODE_HTTP_SERVER], { ports: [8000] })));
      assert.deepEqual([...runtime.running()].filter((id) => ids.includes(id)).sort(), [...ids].sort());
      const bodies = await Promise.all(started.map(({ handle }) => waitForHttp200(handle.ports[8000]!).then((r) => r.body)));
      assert.deepEqual(bodies, ids.map(() => "hello nobody"));
      const exits = await Promise.all(started.map(({ handle }) => handle.stop(2_000)));
      assert.ok(exits.every((exit) => exit.reason === "stopped"), JSON.stringify(exits));
      for (const id of ids) await assertClean(id);
    });
  });
}
