import assert from "node:assert/strict";
import { test } from "node:test";
import { mapOrdered } from "./remote.js";
import { fn, taskQueue } from "./workloads.js";

test("mapOrdered keeps input order, bounds concurrency, and yields as soon as the head is done", async () => {
  let inFlight = 0;
  let peak = 0;
  const delays = [30, 5, 5, 20, 1, 1];
  const results: number[] = [];
  for await (const r of mapOrdered(delays.keys(), 3, async (i) => {
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    await new Promise((res) => setTimeout(res, delays[i]));
    inFlight -= 1;
    return i * 10;
  })) results.push(r);
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50]);
  assert.equal(peak, 3);
});

test("calls that do not fit the workload's kind say which to use", async () => {
  const q = taskQueue({ name: "q" }, async () => 1);
  const f = fn({ name: "f" }, async () => 1);
  await assert.rejects(q.remote(1, { client: {} as never }), /use \.put\(\) for a task queue/);
  await assert.rejects(f.put(1, { client: {} as never }), /put is for task queues/);
  assert.throws(() => q.map([1]), /map is for functions/);
  const saved = process.env.BETA9_GATEWAY;
  delete process.env.BETA9_GATEWAY;
  await assert.rejects(f.remote(1), /set BETA9_GATEWAY and BETA9_TOKEN/);
  if (saved !== undefined) process.env.BETA9_GATEWAY = saved;
});
