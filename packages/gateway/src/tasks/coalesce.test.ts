import assert from "node:assert/strict";
import { test } from "node:test";
import { PerKeyCoalescer } from "./coalesce.js";

test("one job per key at a time; calls meanwhile make exactly one more run; other keys run beside", async () => {
  const runs: string[] = [];
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  const c = new PerKeyCoalescer(async (key) => {
    runs.push(key);
    if (key === "a") await gate;
  });
  const first = c.run("a");
  void c.run("a");
  void c.run("a");
  await c.run("b");
  assert.deepEqual(runs, ["a", "b"], "b does not wait for a");
  const again = gate;
  gate = Promise.resolve();
  release();
  await again;
  await first;
  assert.deepEqual(runs, ["a", "b", "a"], "two calls during the run: one more run");
  await c.run("a");
  assert.deepEqual(runs, ["a", "b", "a", "a"]);
});

test("a failing job rejects its callers and leaves the key free", async () => {
  let fail = true;
  const c = new PerKeyCoalescer(async () => {
    if (fail) throw new Error("boom");
  });
  await assert.rejects(c.run("k"), /boom/);
  fail = false;
  await c.run("k");
});

test("the gap holds across runs: a call right after a run ended starts only once the gap since its start passed", async () => {
  const starts: number[] = [];
  const c = new PerKeyCoalescer(async () => void starts.push(Date.now()), 100);
  await c.run("k");
  await c.run("k");
  await c.run("other");
  assert.equal(starts.length, 3);
  assert.ok(starts[1]! - starts[0]! >= 95, `${starts[1]! - starts[0]!} ms apart`);
  assert.ok(starts[2]! - starts[1]! < 50, "another key does not wait");
});
