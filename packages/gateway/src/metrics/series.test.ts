import assert from "node:assert/strict";
import { test } from "node:test";
import { WorkloadSeries } from "./series.js";

test("calls, errors, latency percentiles, cold starts and containers land in their step; empty steps are filled", () => {
  let now = 1_000_000;
  const s = new WorkloadSeries({ stepMs: 10_000, points: 6, now: () => now });
  for (let i = 0; i < 98; i++) s.call("a", 0.01, false);
  s.call("a", 2, true);
  s.call("a", 2, true);
  s.coldStart("a");
  s.sampleContainers([{ stubId: "a" }, { stubId: "a" }, { stubId: null }]);
  now += 20_000;
  s.call("a", undefined, false);
  const points = s.get("a");
  assert.equal(points.length, 6);
  assert.deepEqual(points.map((p) => p.calls), [0, 0, 0, 100, 0, 1]);
  const first = points[3]!;
  assert.equal(first.errors, 2);
  assert.equal(first.coldStarts, 1);
  assert.equal(first.containers, 2);
  assert.ok(first.p50! >= 0.01 && first.p50! < 0.02, String(first.p50));
  assert.ok(first.p99! >= 2 && first.p99! < 3.5, String(first.p99));
  assert.equal(points[5]!.p50, null); // a call without a duration counts, but has no latency
  assert.deepEqual(s.get("unknown").map((p) => p.calls), [0, 0, 0, 0, 0, 0]);
});

test("bounded: old steps fall out of the window, and the least recently active workload is dropped", () => {
  let now = 0;
  const s = new WorkloadSeries({ stepMs: 1000, points: 3, maxStubs: 2, now: () => now });
  s.call("a", 0.1, false);
  now = 5000;
  s.call("a", 0.1, false);
  assert.deepEqual(s.get("a").map((p) => p.calls), [0, 0, 1]);
  s.call("b", 0.1, false);
  s.call("c", 0.1, false);
  assert.equal(s.size, 2);
  assert.deepEqual(s.get("a").map((p) => p.calls), [0, 0, 0]);
  assert.deepEqual(s.get("c").map((p) => p.calls), [0, 0, 1]);
});

test("bounded per workspace: a workspace with many busy workloads never pushes another workspace's series out", () => {
  let now = 0;
  const s = new WorkloadSeries({ stepMs: 1000, points: 3, now: () => now });
  s.call("theirs-1", 0.1, false, "ws-victim");
  s.coldStart("theirs-2", "ws-victim");
  s.sampleContainers([{ stubId: "theirs-3", workspaceId: "ws-victim" }]);
  // Another workspace touches 1,000 workloads, each after the victim's.
  for (let i = 0; i < 1000; i++) s.call(`noisy-${i}`, 0.1, false, "ws-noisy");
  assert.deepEqual(s.get("theirs-1").map((p) => p.calls), [0, 0, 1], "the victim's series is still there");
  assert.deepEqual(s.get("theirs-2").map((p) => p.coldStarts), [0, 0, 1]);
  assert.deepEqual(s.get("theirs-3").map((p) => p.containers), [0, 0, 1]);
  assert.equal(s.size, 256 + 3, "the noisy workspace holds its own cap (256) alone");
  assert.deepEqual(s.get("noisy-999").map((p) => p.calls), [0, 0, 1]);
  assert.deepEqual(s.get("noisy-0").map((p) => p.calls), [0, 0, 0], "its own least recently active went");
});

test("bounded in all: past the global cap the workspace holding the most gives way; a task outcome's stub moves to its workspace once known", () => {
  let now = 0;
  const s = new WorkloadSeries({ stepMs: 1000, points: 3, maxStubs: 8, maxStubsPerWorkspace: 4, now: () => now });
  for (const ws of ["a", "b"]) for (let i = 0; i < 2; i++) s.call(`${ws}-${i}`, 0.1, false, ws);
  for (let i = 0; i < 4; i++) s.call(`c-${i}`, 0.1, false, "c");
  assert.equal(s.size, 8);
  s.call("a-2", 0.1, false, "a");
  assert.equal(s.size, 8);
  assert.deepEqual(s.get("c-0").map((p) => p.calls), [0, 0, 0], "the biggest workspace (c, 4) gave way");
  for (const id of ["a-0", "a-1", "b-0", "b-1", "a-2"]) assert.deepEqual(s.get(id).map((p) => p.calls), [0, 0, 1], id);
  s.call("t", 0.1, true); // a task outcome: no workspace yet
  s.call("t", 0.1, false, "b");
  assert.deepEqual(s.get("t").map((p) => [p.calls, p.errors]), [[0, 0], [0, 0], [2, 1]], "its steps moved with it");
});
