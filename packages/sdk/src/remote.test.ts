import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

test("calls that do not fit the workload's kind say which to use", async (t) => {
  const q = taskQueue({ name: "q" }, async () => 1);
  const f = fn({ name: "f" }, async () => 1);
  await assert.rejects(q.remote(1, { client: {} as never }), /use \.put\(\) for a task queue/);
  await assert.rejects(f.put(1, { client: {} as never }), /put is for task queues/);
  assert.throws(() => q.map([1]), /map is for functions/);
  // Neither the environment nor a CLI config names a gateway.
  const saved = { gateway: process.env.BETA9_GATEWAY, dir: process.env.BETA9_CONFIG_DIR };
  const empty = mkdtempSync(join(tmpdir(), "beta9-noconfig-"));
  t.after(() => {
    for (const [key, value] of [["BETA9_GATEWAY", saved.gateway], ["BETA9_CONFIG_DIR", saved.dir]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    rmSync(empty, { recursive: true, force: true });
  });
  delete process.env.BETA9_GATEWAY;
  process.env.BETA9_CONFIG_DIR = empty;
  await assert.rejects(f.remote(1), /no gateway configured: run `beta9 up`.*set BETA9_GATEWAY and BETA9_TOKEN/);
});
