/**
 * Task attempts that outlive their caller (task-attempts.ts), through the runner's real HTTP
 * server: a gateway that hangs up mid-attempt leaves the handler running; the gateway that takes
 * the task over joins it or gets its kept answer; the handler runs once. Handler errors and
 * cancels are not kept, and an orphan nobody asks for again is aborted after the grace.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { WorkloadDescriptor } from "@beta9/protocol";
import { Invoker } from "./invoker.js";
import { createRunnerServer, type RunnerState } from "./server.js";

const runs = new Map<string, number>();
const gates = new Map<string, () => void>();
let aborted: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const workload = {
  __beta9Workload: true, kind: "taskqueue", name: "jobs", config: {},
  handler: async (input: { gate?: boolean; fail?: boolean; n: number }, ctx: { taskId: string; signal: AbortSignal }) => {
    runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
    if (input.gate) {
      await new Promise<void>((resolve, reject) => {
        gates.set(ctx.taskId, resolve);
        ctx.signal.addEventListener("abort", () => {
          aborted.push(ctx.taskId);
          reject(new Error("aborted"));
        });
      });
    }
    if (input.fail && runs.get(ctx.taskId) === 1) throw new Error("first run fails");
    return { n: input.n, run: runs.get(ctx.taskId) };
  },
} as unknown as WorkloadDescriptor;

let base = "";
const server = createRunnerServer({
  phase: "ready", invoker: new Invoker(workload, { concurrency: 4, containerId: "c1", onStartValue: undefined }),
  containerId: "c1", startedAt: Date.now(), concurrency: 4, taskAttempts: { orphanGraceMs: 300, keepMs: 60_000, keepBytes: 1024 },
} satisfies RunnerState);

before(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

/** POST with a body; `hangUpAfterMs` drops the connection before the answer (a gateway dying). */
function post(path: string, body: unknown, headers: Record<string, string> = {}, hangUpAfterMs?: number): Promise<{ status: number; text: string } | "hung up"> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, text }));
    });
    req.on("error", (err) => (hangUpAfterMs === undefined ? reject(err) : resolve("hung up")));
    req.end(JSON.stringify(body));
    if (hangUpAfterMs !== undefined) setTimeout(() => (req.destroy(), resolve("hung up")), hangUpAfterMs);
  });
}

const attempt = (id: string, input: unknown, hangUpAfterMs?: number) =>
  post("/invoke", { input }, { "x-beta9-task-id": id, "x-beta9-task-retries": "0" }, hangUpAfterMs);

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await sleep(10);
  assert.ok(check(), what);
}

describe("task attempts outlive their caller", () => {
  it("a batch whose caller hangs up runs on; the next attempt joins it, a later one gets the kept answer; one run each", async () => {
    const batch = post("/invoke-batch", { tasks: [{ id: "t1", input: { gate: true, n: 1 } }, { id: "t2", input: { gate: true, n: 2 } }] }, {}, 100);
    assert.equal(await batch, "hung up");
    await until("both handlers started", () => gates.has("t1") && gates.has("t2"));
    await sleep(50);
    assert.deepEqual(aborted, [], "a hang-up does not abort a task's handler");
    const joined = attempt("t1", { gate: true, n: 1 });
    await sleep(50);
    gates.get("t1")!();
    gates.get("t2")!();
    assert.deepEqual(await joined, { status: 200, text: '{"result":{"n":1,"run":1}}' });
    // t2 ended with nobody to tell: its answer was kept for the gateway that takes it over.
    assert.deepEqual(await attempt("t2", { gate: true, n: 2 }), { status: 200, text: '{"result":{"n":2,"run":1}}' });
    assert.deepEqual(await attempt("t1", { gate: true, n: 1 }), { status: 200, text: '{"result":{"n":1,"run":1}}' });
    assert.deepEqual([runs.get("t1"), runs.get("t2")], [1, 1]);
  });

  it("a handler error is not kept (the next attempt runs again); a cancel aborts a joined attempt at once", async () => {
    assert.equal((await attempt("f1", { fail: true, n: 3 }) as { status: number }).status, 500);
    assert.deepEqual(await attempt("f1", { fail: true, n: 3 }), { status: 200, text: '{"result":{"n":3,"run":2}}' });

    const first = attempt("c1", { gate: true, n: 4 });
    await until("started", () => gates.has("c1"));
    const second = attempt("c1", { gate: true, n: 4 });
    await sleep(20);
    assert.equal((await post("/cancel/c1", {}) as { status: number }).status, 204);
    const answers = await Promise.all([first, second]);
    assert.deepEqual(answers.map((a) => (a as { status: number }).status), [500, 500]);
    assert.equal(runs.get("c1"), 1, "the second attempt joined the first");
  });

  it("an orphan nobody asks for again is aborted after the grace; a success larger than what is kept is not kept", async () => {
    aborted = [];
    assert.equal(await attempt("o1", { gate: true, n: 5 }, 50), "hung up");
    await until("started", () => gates.has("o1"));
    await until("aborted after the 300 ms grace", () => aborted.includes("o1"));

    const big = await attempt("b1", { n: "x".repeat(2000) } as unknown as { n: number });
    assert.equal((big as { status: number }).status, 200);
    assert.equal(JSON.parse((await attempt("b1", { n: 6 }) as { text: string }).text).result.run, 2, "2 KB is over the 1 KB kept: it runs again");
  });
});
