/** The SQLite log store: the shared conformance suite, plus durability, bounds and retention. */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LogLine } from "@beta9/protocol";
import { runLogStoreConformance } from "./conformance.js";
import { LINE_OVERHEAD_BYTES, SqliteLogStore } from "./sqlite.js";
import { DEFAULT_LOG_RETENTION, parseDuration, parseSize, resolveLogRetention, type LogSource } from "./types.js";

const root = mkdtempSync(join(tmpdir(), "beta9-logs-"));
after(() => rmSync(root, { recursive: true, force: true }));
let files = 0;
const freshPath = () => join(mkdtempSync(join(root, `db-${files++}-`)), "logs.db");

runLogStoreConformance("sqlite (writer thread)", async () => new SqliteLogStore(freshPath(), { pruneIntervalMs: 0 }));
runLogStoreConformance("sqlite in memory (written in place)", async () => new SqliteLogStore(":memory:", { pruneIntervalMs: 0 }));

const C1: LogSource = { workspaceId: "ws", containerId: "c1", stubId: "s1" };
const C2: LogSource = { workspaceId: "ws", containerId: "c2", stubId: "s1" };
const C3: LogSource = { workspaceId: "ws", containerId: "c3", stubId: null };
const lines = (prefix: string, n: number, width = 0): LogLine[] =>
  Array.from({ length: n }, (_, i) => ({ stream: "stdout", line: `${prefix}${i}`.padEnd(width, "."), at: i }));
const read = async (store: SqliteLogStore, containerId: string) =>
  (await store.query({ workspaceId: "ws", select: { containerId }, limit: 10_000 })).map((e) => e.line.replace(/\.+$/, ""));
const tick = () => new Promise((r) => setTimeout(r, 3));

describe("sqlite log store", () => {
  it("keeps lines across a close and reopen (a gateway restart), and seq keeps increasing", async () => {
    const path = freshPath();
    const first = new SqliteLogStore(path, { pruneIntervalMs: 0 });
    first.append(C1, [{ stream: "stdout", line: "before", at: 1, taskId: "t1" }]);
    await first.close(); // flushes what was buffered
    const second = new SqliteLogStore(path, { pruneIntervalMs: 0 });
    try {
      second.append(C1, lines("after", 1));
      const got = await second.query({ workspaceId: "ws", select: { containerId: "c1" }, limit: 10 });
      assert.deepEqual(got.map((e) => [e.line, e.taskId]), [["before", "t1"], ["after0", null]]);
      assert.ok(got[1]!.seq > got[0]!.seq);
      assert.equal((await second.query({ workspaceId: "ws", select: { taskId: "t1" }, limit: 10 }))[0]?.line, "before");
      assert.equal(await second.ownerOf("c1"), "ws");
    } finally {
      await second.close();
    }
  });

  it("cuts a container's oldest lines past its byte bound, to 80 % of it, and leaves the others alone", async () => {
    const bound = 10_000;
    const store = new SqliteLogStore(freshPath(), { pruneIntervalMs: 0, retention: { maxBytesPerContainer: bound } });
    try {
      const perLine = 100 + LINE_OVERHEAD_BYTES;
      store.append(C2, lines("keep", 5, 100));
      for (let i = 0; i < 10; i++) {
        store.append(C1, lines(`b${i}-`, 10, 100));
        await read(store, "c1"); // one flush per batch, as arrivals over time would make
      }
      const left = await read(store, "c1");
      const all = Array.from({ length: 10 }, (_, b) => Array.from({ length: 10 }, (_, i) => `b${b}-${i}`)).flat();
      assert.deepEqual(left, all.slice(all.length - left.length), "what is left is the newest lines, in order");
      assert.ok(left.length * perLine <= bound, `${left.length} lines of ${perLine} bytes exceed ${bound}`);
      assert.ok(left.length * perLine >= bound * 0.8 - 10 * perLine, `only ${left.length} lines left`);
      assert.deepEqual(await read(store, "c2"), ["keep0", "keep1", "keep2", "keep3", "keep4"]);
      assert.equal(store.stats().pruned.container, all.length - left.length);
    } finally {
      await store.close();
    }
  });

  it("retention by age: a container whose lines are all old goes whole; one still writing loses only its old lines", async () => {
    const maxAgeMs = 60_000;
    const store = new SqliteLogStore(freshPath(), { pruneIntervalMs: 0, retention: { maxAgeMs } });
    try {
      store.append(C1, lines("gone", 3));
      store.append(C2, lines("old", 2));
      await read(store, "c1");
      const written = Date.now();
      await tick();
      store.append(C2, lines("new", 2));
      await read(store, "c2");
      // As if the retention ran a while later: the first flush is past the age, the second is not.
      const result = await store.prune(written + 1 + maxAgeMs);
      assert.deepEqual(result, { age: 5, container: 0, total: 0 });
      assert.deepEqual(await read(store, "c1"), []);
      assert.equal(await store.ownerOf("c1"), undefined);
      assert.deepEqual(await read(store, "c2"), ["new0", "new1"]);
      // Lines appended after the prune still land (the dropped container's row comes back).
      store.append(C1, lines("again", 1));
      assert.deepEqual(await read(store, "c1"), ["again0"]);
    } finally {
      await store.close();
    }
  });

  it("retention by total: the containers that wrote last longest ago go first until the total fits", async () => {
    const perLine = 50 + LINE_OVERHEAD_BYTES;
    const store = new SqliteLogStore(freshPath(), { pruneIntervalMs: 0, retention: { maxTotalBytes: 25 * perLine } });
    try {
      for (const source of [C1, C2, C3]) {
        store.append(source, lines(source.containerId, 10, 50));
        await read(store, source.containerId);
        await tick();
      }
      const result = await store.prune();
      assert.deepEqual(result, { age: 0, container: 0, total: 10 });
      assert.deepEqual((await read(store, "c1")).length, 0);
      assert.deepEqual((await read(store, "c2")).length, 10);
      assert.deepEqual((await read(store, "c3")).length, 10);
    } finally {
      await store.close();
    }
  });

  it("drops (and counts) lines past the memory bound while a flush is pending, and keeps the rest", async () => {
    const store = new SqliteLogStore(freshPath(), { pruneIntervalMs: 0, flushMs: 60_000, maxPendingChars: 100 });
    try {
      store.append(C1, lines("", 30, 10)); // 10 characters each: lines past the 100th character are dropped
      assert.equal(store.stats().dropped, 19);
      assert.equal((await read(store, "c1")).length, 11);
      store.append(C1, lines("later", 1)); // the flush made room again
      assert.equal((await read(store, "c1")).length, 12);
    } finally {
      await store.close();
    }
  });

  it("a since older than every line reads them all, after pruning too", async () => {
    const store = new SqliteLogStore(freshPath(), { pruneIntervalMs: 0 });
    try {
      store.append(C1, lines("a", 2));
      await read(store, "c1");
      await store.prune();
      store.append(C1, lines("b", 1));
      const got = await store.query({ workspaceId: "ws", select: { stubId: "s1" }, sinceMs: 0, limit: 10 });
      assert.deepEqual(got.map((e) => e.line), ["a0", "a1", "b0"]);
      assert.deepEqual(await store.query({ workspaceId: "ws", select: { stubId: "s1" }, sinceMs: Date.now() + 60_000, limit: 10 }), []);
    } finally {
      await store.close();
    }
  });
});

describe("log retention settings", () => {
  it("parses durations and sizes", () => {
    assert.equal(parseDuration("7d"), 7 * 86_400_000);
    assert.equal(parseDuration("90m"), 90 * 60_000);
    assert.equal(parseDuration("7 days"), undefined);
    assert.equal(parseSize("16Mi"), 16 * 1024 * 1024);
    assert.equal(parseSize("4Gi"), 4 * 1024 ** 3);
    assert.equal(parseSize("65536"), 65_536);
    assert.equal(parseSize("16MB"), undefined);
  });

  it("takes explicit options, then BETA9_LOG_* variables, then the defaults; a malformed variable is an error", () => {
    assert.deepEqual(resolveLogRetention({}, {}), DEFAULT_LOG_RETENTION);
    assert.deepEqual(resolveLogRetention({}, { BETA9_LOG_RETENTION: "12h", BETA9_LOG_MAX_PER_CONTAINER: "1Mi", BETA9_LOG_MAX_TOTAL: "1Gi" }), {
      maxAgeMs: 12 * 3_600_000, maxBytesPerContainer: 1024 * 1024, maxTotalBytes: 1024 ** 3,
    });
    assert.equal(resolveLogRetention({ maxAgeMs: 5 }, { BETA9_LOG_RETENTION: "12h" }).maxAgeMs, 5);
    assert.throws(() => resolveLogRetention({}, { BETA9_LOG_RETENTION: "a week" }), /BETA9_LOG_RETENTION="a week" is not valid: expected a duration/);
    assert.throws(() => resolveLogRetention({}, { BETA9_LOG_MAX_PER_CONTAINER: "0" }), /BETA9_LOG_MAX_PER_CONTAINER="0" is not valid: expected a size/);
  });
});
