/**
 * The log store conformance suite: every LogStore backend runs these through the interface only
 * (types.ts), so another backend is held to the same semantics as SQLite. Each test opens a fresh
 * store and closes it afterwards, even when the test fails.
 */
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { LogEntry, LogLine } from "@beta9/protocol";
import type { LogSource, LogStore } from "./types.js";

const A: LogSource = { workspaceId: "ws-a", containerId: "c-a1", stubId: "stub-a" };
const A2: LogSource = { workspaceId: "ws-a", containerId: "c-a2", stubId: "stub-a" };
const B: LogSource = { workspaceId: "ws-b", containerId: "c-b1", stubId: "stub-b" };

const lines = (prefix: string, n: number, extra: Partial<LogLine> = {}): LogLine[] =>
  Array.from({ length: n }, (_, i) => ({ stream: i % 2 ? "stderr" : "stdout", line: `${prefix}${i}`, at: 1_700_000_000_000 + i, ...extra }));
const text = (entries: readonly LogEntry[]) => entries.map((e) => e.line);

export function runLogStoreConformance(name: string, open: () => Promise<LogStore>): void {
  describe(`log store conformance: ${name}`, () => {
    let store: LogStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    it("reads a container's lines in order, with stream, time and task; another workspace reads none", async () => {
      store.append(A, lines("x", 3));
      store.append(A, [{ stream: "stdout", line: "tagged", at: 5, taskId: "t-1" }]);
      const got = await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, limit: 100 });
      assert.deepEqual(text(got), ["x0", "x1", "x2", "tagged"]);
      assert.deepEqual(got.map((e) => [e.stream, e.containerId, e.taskId]), [["stdout", "c-a1", null], ["stderr", "c-a1", null], ["stdout", "c-a1", null], ["stdout", "c-a1", "t-1"]]);
      assert.equal(got[1]!.at, 1_700_000_000_001);
      assert.ok(got.every((e, i) => i === 0 || e.seq > got[i - 1]!.seq), "seq increases");
      assert.deepEqual(await store.query({ workspaceId: "ws-b", select: { containerId: "c-a1" }, limit: 100 }), []);
      assert.equal(await store.ownerOf("c-a1"), "ws-a");
      assert.equal(await store.ownerOf("nope"), undefined);
    });

    it("a stub's lines come from all its containers, interleaved as they arrived", async () => {
      store.append(A, lines("one-", 2));
      store.append(A2, lines("two-", 2));
      store.append(A, lines("three-", 1));
      store.append(B, lines("other-", 2));
      assert.deepEqual(text(await store.query({ workspaceId: "ws-a", select: { stubId: "stub-a" }, limit: 100 })), ["one-0", "one-1", "two-0", "two-1", "three-0"]);
      assert.deepEqual(await store.query({ workspaceId: "ws-a", select: { stubId: "stub-b" }, limit: 100 }), []);
    });

    it("a task's lines, from whichever container ran them, only within the workspace", async () => {
      store.append(A, [{ stream: "stdout", line: "first attempt", at: 1, taskId: "t-9" }, { stream: "stdout", line: "not it", at: 2 }]);
      store.append(A2, [{ stream: "stderr", line: "retry", at: 3, taskId: "t-9" }]);
      // Another workspace's container claiming the same task id is not read.
      store.append(B, [{ stream: "stdout", line: "forged", at: 4, taskId: "t-9" }]);
      const got = await store.query({ workspaceId: "ws-a", select: { taskId: "t-9" }, limit: 100 });
      assert.deepEqual(got.map((e) => [e.containerId, e.line]), [["c-a1", "first attempt"], ["c-a2", "retry"]]);
    });

    it("limit gives the last lines; after gives the first lines past a cursor", async () => {
      store.append(A, lines("n", 10));
      const last = await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, limit: 3 });
      assert.deepEqual(text(last), ["n7", "n8", "n9"]);
      const all = await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, limit: 100 });
      const page = await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, afterSeq: all[2]!.seq, limit: 3 });
      assert.deepEqual(text(page), ["n3", "n4", "n5"]);
    });

    it("since excludes what arrived before it and keeps what arrived after", async () => {
      store.append(A, lines("old", 2));
      await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, limit: 1 }); // written
      await new Promise((r) => setTimeout(r, 5));
      const cut = Date.now();
      await new Promise((r) => setTimeout(r, 5));
      store.append(A, lines("new", 2));
      assert.deepEqual(text(await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, sinceMs: cut, limit: 100 })), ["new0", "new1"]);
      assert.deepEqual(text(await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, sinceMs: cut - 60_000, limit: 100 })), ["old0", "old1", "new0", "new1"]);
    });

    it("subscribers get each batch with its seqs at once, until they unsubscribe", async () => {
      const seen: [string, string[]][] = [];
      const stop = store.subscribe((source, entries) => seen.push([source.containerId, text(entries)]));
      store.append(A, lines("s", 2));
      store.append(B, lines("t", 1));
      stop();
      store.append(A, lines("u", 1));
      assert.deepEqual(seen, [["c-a1", ["s0", "s1"]], ["c-b1", ["t0"]]]);
      const stored = await store.query({ workspaceId: "ws-a", select: { containerId: "c-a1" }, limit: 100 });
      assert.deepEqual(text(stored), ["s0", "s1", "u0"]);
      assert.equal(store.stats().lines, 4);
    });
  });
}
