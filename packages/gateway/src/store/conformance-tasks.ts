/**
 * Store conformance for durable tasks (part of the shared suite, kept in its own file): the queue
 * operations the dispatcher relies on, through the `Store` interface only.
 */
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { hashStubConfig, normalizeStubConfig } from "@beta9/protocol";
import type { Store, TaskFilter } from "./types.js";

const policy = { maxRetries: 2, timeout: 10, ttl: 3600 };

export function runTaskConformance(backendName: string, open: () => Promise<Store>): void {
  describe(`${backendName} store: durable tasks`, () => {
    let store: Store;
    let ws: string;
    let stubId: string;
    beforeEach(async () => {
      store = await open();
      ws = (await store.workspaces.create(`tasks-${Math.random().toString(36).slice(2, 8)}`, "workspace")).workspace.id;
      const app = await store.apps.getOrCreate(ws, "app");
      const config = normalizeStubConfig("taskqueue", {});
      stubId = (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "q", type: "taskqueue/deployment", objectId: null, config, configHash: hashStubConfig(config) })).stub.id;
    });
    afterEach(async () => store.close());

    it("claims oldest first, once; input round-trips; inflight counts pending and running", async () => {
      const a = await store.tasks.create(ws, stubId, { n: 1 }, policy);
      const b = await store.tasks.create(ws, stubId, { n: 2 }, policy);
      assert.equal(await store.tasks.inflight(stubId), 2);
      const [first, second, none] = [await store.tasks.claimNext(stubId, "c1"), await store.tasks.claimNext(stubId, "c2"), await store.tasks.claimNext(stubId, "c3")];
      assert.deepEqual([first?.id, second?.id, none], [a.id, b.id, undefined]);
      assert.deepEqual([first?.status, first?.containerId, first?.maxRetries], ["RUNNING", "c1", 2]);
      assert.deepEqual(await store.tasks.input(a.id), { n: 1 });
      assert.equal(await store.tasks.inflight(stubId), 2);
      assert.equal(await store.tasks.waiting(stubId), 0, "claimed: nothing waits");
      await store.tasks.create(ws, stubId, { n: 3 }, policy);
      assert.equal(await store.tasks.retry(a.id, "again", 60_000), true);
      assert.deepEqual([await store.tasks.waiting(stubId), await store.tasks.inflight(stubId)], [2, 3], "a PENDING and a RETRY wait; the RUNNING one does not");
    });

    it("input and result round-trip exactly (key order, escapes, NUL); times are ISO 8601 UTC with milliseconds", async () => {
      const input = { z: 1, a: ["\u0000", "é", "\n"], big: 12345678901234, f: 0.30000000000000004, nested: { y: null, b: true } };
      const t = await store.tasks.create(ws, stubId, input, policy);
      const claimed = await store.tasks.claimNext(stubId, "c");
      assert.equal(claimed?.inputJson, JSON.stringify(input), "the handler gets the input as sent");
      assert.deepEqual(await store.tasks.input(t.id), input);
      assert.equal(await store.tasks.finish(t.id, "COMPLETE", { result: input }), true);
      const done = await store.tasks.get(ws, t.id);
      assert.deepEqual(done?.result, input);
      assert.equal(done?.createdAt, t.createdAt);
      assert.equal(done?.expiresAt, t.expiresAt);
      const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
      for (const at of [done?.createdAt, done?.startedAt, done?.endedAt, done?.expiresAt]) assert.match(at ?? "", iso);
    });

    it("concurrent creates, claims and finishes each get their own answer; one bad create fails alone", async () => {
      const made = await Promise.allSettled([
        store.tasks.create(ws, stubId, { n: 1 }, policy), store.tasks.create(ws, "no-such-stub", null, policy), store.tasks.create(ws, stubId, { n: 2 }, policy),
      ]);
      assert.deepEqual(made.map((m) => m.status), ["fulfilled", "rejected", "fulfilled"]);
      assert.equal(((made[1] as PromiseRejectedResult).reason as { code?: string }).code, "RESOURCE_NOT_FOUND");
      const claimed = await Promise.all([store.tasks.claimNext(stubId, "a"), store.tasks.claimNext(stubId, "b"), store.tasks.claimNext(stubId, "c")]);
      assert.equal(new Set(claimed.filter(Boolean).map((t) => t!.id)).size, 2, "each task claimed once");
      // Which call comes away empty is not specified: a shared store claims on several connections at once.
      assert.equal(claimed.filter((t) => t === undefined).length, 1);
      const ended = await Promise.all(claimed.filter(Boolean).flatMap((t) => [store.tasks.finish(t!.id, "COMPLETE", { result: 1 }), store.tasks.finish(t!.id, "ERROR", { error: "late" })]));
      // Of two racing finishes of one task exactly one wins; which one, a shared store does not promise.
      assert.deepEqual([ended[0]! !== ended[1]!, ended[2]! !== ended[3]!, ended.filter(Boolean).length], [true, true, 2]);
      assert.equal(await store.tasks.inflight(stubId), 0);
    });

    it("finish ends a task once; a finished task is not claimed, retried or finished again", async () => {
      const t = await store.tasks.create(ws, stubId, null, policy);
      await store.tasks.claimNext(stubId, "c");
      assert.equal(await store.tasks.finish(t.id, "COMPLETE", { result: { ok: true } }), true);
      assert.equal(await store.tasks.finish(t.id, "ERROR", { error: "late" }), false);
      assert.equal(await store.tasks.retry(t.id, "late", 0), false);
      const done = await store.tasks.get(ws, t.id);
      assert.deepEqual([done?.status, done?.result, done?.error], ["COMPLETE", { ok: true }, null]);
      assert.ok(done?.endedAt);
      assert.equal(await store.tasks.inflight(stubId), 0);
    });

    it("retry is RETRY with its count, last error and next attempt time until claimed again; it never expires", async () => {
      const t = await store.tasks.create(ws, stubId, null, { ...policy, ttl: 0 });
      await store.tasks.claimNext(stubId, "c");
      const before = Date.now();
      assert.equal(await store.tasks.retry(t.id, "boom", 60_000), true);
      assert.equal(await store.tasks.claimNext(stubId, "c"), undefined, "not due yet");
      const waiting = await store.tasks.get(ws, t.id);
      assert.deepEqual([waiting?.status, waiting?.retries, waiting?.error, waiting?.containerId], ["RETRY", 1, "boom", null]);
      const next = Date.parse(waiting?.nextAttemptAt ?? "");
      assert.ok(next >= before + 59_000 && next <= Date.now() + 61_000, `next attempt ${waiting?.nextAttemptAt}`);
      assert.equal(await store.tasks.inflight(stubId), 1, "a task waiting to retry is queue depth");
      assert.deepEqual(await store.tasks.stubsWithPending(), [stubId], "resumed after a restart");
      assert.deepEqual(await store.tasks.expireDue(), [], "the ttl bounds the wait for the first attempt only");
      assert.equal(await store.tasks.finish(t.id, "CANCELLED", { error: "cancelled" }), true, "a retrying task can be cancelled");
      assert.equal((await store.tasks.get(ws, t.id))?.nextAttemptAt, null);
      await store.tasks.claimNext(stubId, "c");
      const t2 = await store.tasks.create(ws, stubId, null, policy);
      await store.tasks.claimNext(stubId, "c");
      await store.tasks.retry(t2.id, "again", 0);
      const again = await store.tasks.claimNext(stubId, "c");
      assert.deepEqual([again?.id, again?.status, again?.retries, again?.error, again?.nextAttemptAt], [t2.id, "RUNNING", 1, "again", null]);
    });

    it("expires pending tasks past their ttl, and requeues running ones after a restart", async () => {
      const stale = await store.tasks.create(ws, stubId, null, { ...policy, ttl: 0 });
      const running = await store.tasks.create(ws, stubId, null, policy);
      await new Promise((r) => setTimeout(r, 5));
      const expired = await store.tasks.expireDue();
      assert.deepEqual(expired.map((e) => e.id), [stale.id]);
      assert.deepEqual([(await store.tasks.get(ws, stale.id))?.status, (await store.tasks.get(ws, stale.id))?.error], ["EXPIRED", "waited longer than its ttl"]);
      assert.equal((await store.tasks.claimNext(stubId, "c"))?.id, running.id);
      assert.deepEqual(await store.tasks.requeueOrphaned(), [], "a gateway's own running attempt is never an orphan");
      assert.deepEqual(await store.tasks.requeueRunning(), [{ id: running.id, stubId, status: "RETRY" }]);
      const requeued = await store.tasks.get(ws, running.id);
      assert.deepEqual([requeued?.status, requeued?.retries], ["RETRY", 1], "cut off by a stop: tried again, and counted (at least once)");
      assert.equal((await store.tasks.claimNext(stubId, "c"))?.id, running.id);
      await store.tasks.requeueRunning();
      assert.deepEqual(await store.tasks.stubsWithPending(), [stubId]);
      assert.equal((await store.tasks.get("another-workspace", running.id)), undefined);
      assert.equal((await store.tasks.getAny(running.id))?.id, running.id);
    });

    it("an attempt cut off by a stop resumes on its own container at once; another container takes it only later", async () => {
      const cut = await store.tasks.create(ws, stubId, { n: 1 }, policy);
      assert.equal((await store.tasks.claimNext(stubId, "c-ran-it"))?.id, cut.id);
      const fresh = await store.tasks.create(ws, stubId, { n: 2 }, policy);
      await store.tasks.requeueRunning();
      const requeued = await store.tasks.get(ws, cut.id);
      assert.equal(requeued?.status, "RETRY");
      assert.ok(Date.parse(requeued!.nextAttemptAt!) > Date.now() + 10_000, "other containers wait (RESUME_ELSEWHERE_AFTER_MS)");
      const other = await store.tasks.claimNext(stubId, "c-other");
      assert.equal(other?.id, fresh.id, "another container takes the fresh task, not the resumed one");
      assert.equal(await store.tasks.claimNext(stubId, "c-other"), undefined);
      const resumed = await store.tasks.claimNext(stubId, "c-ran-it");
      assert.deepEqual([resumed?.id, resumed?.containerId, resumed?.retries, resumed?.inputJson], [cut.id, "c-ran-it", 1, '{"n":1}']);
      // A plain retry (a handler error) is anyone's once due: no container is preferred.
      await store.tasks.retry(cut.id, "failed", 0);
      assert.equal((await store.tasks.claimNext(stubId, "c-other"))?.id, cut.id);
    });

    it("a retry may resume on its container (others wait until it is released), or go uncounted", async () => {
      const t = await store.tasks.create(ws, stubId, { n: 1 }, policy);
      await store.tasks.claimNext(stubId, "c1");
      assert.equal(await store.tasks.retry(t.id, "exchange lost", 0, { resumeOn: "c1" }), true);
      assert.equal(await store.tasks.claimNext(stubId, "c2"), undefined, "offered to c1 first");
      assert.deepEqual([(await store.tasks.claimNext(stubId, "c1"))?.id, (await store.tasks.get(ws, t.id))?.retries], [t.id, 1]);
      await store.tasks.retry(t.id, "exchange lost", 0, { resumeOn: "c1" });
      assert.deepEqual(await store.tasks.releaseResumes("c1"), [stubId]);
      assert.deepEqual(await store.tasks.releaseResumes("c1"), [], "released once");
      assert.equal((await store.tasks.claimNext(stubId, "c2"))?.id, t.id, "c1 exited: anyone's");
      assert.equal(await store.tasks.retry(t.id, "no free slot", 0, { uncounted: true }), true);
      assert.deepEqual([(await store.tasks.claimNext(stubId, "c3"))?.id, (await store.tasks.get(ws, t.id))?.retries], [t.id, 2], "the BUSY retry was not counted");
    });

    it("an expired task's error names what its stub waited for, when something is known", async () => {
      const app = await store.apps.getOrCreate(ws, "app");
      const config = normalizeStubConfig("function", {});
      const other = (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "f", type: "function/deployment", objectId: null, config, configHash: hashStubConfig(config) })).stub.id;
      const waited = await store.tasks.create(ws, stubId, null, { ...policy, ttl: 0 });
      const plain = await store.tasks.create(ws, other, null, { ...policy, ttl: 0 });
      await new Promise((r) => setTimeout(r, 5));
      const asked: string[] = [];
      const expired = await store.tasks.expireDue((id) => {
        asked.push(id);
        return id === stubId ? "waiting for capacity: needs 1000m CPU, 250m free on 1 worker" : undefined;
      });
      assert.deepEqual(expired.map((e) => e.id).sort(), [waited.id, plain.id].sort());
      assert.equal((await store.tasks.get(ws, waited.id))?.error, "waited longer than its ttl; waiting for capacity: needs 1000m CPU, 250m free on 1 worker");
      assert.equal((await store.tasks.get(ws, plain.id))?.error, "waited longer than its ttl");
      assert.ok(asked.includes(stubId) && asked.includes(other), "asked about each stub with an expiring task");
    });

    it("lists by status (one or several), by stub and by deployment name, within the workspace only", async () => {
      const app = await store.apps.getOrCreate(ws, "app");
      const config = normalizeStubConfig("taskqueue", { cpu: 0.5 });
      const v2 = (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "q", type: "taskqueue/deployment", objectId: null, config, configHash: hashStubConfig(config) })).stub.id;
      const loose = (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "loose", type: "taskqueue/deployment", objectId: null, config, configHash: "loose" })).stub.id;
      await store.deployments.create(ws, stubId, "jobs");
      await store.deployments.create(ws, v2, "jobs");
      const gone = await store.deployments.create(ws, loose, "gone");
      await store.deployments.delete(ws, gone.id);
      const [a, b, c, d] = [await store.tasks.create(ws, stubId, null, policy), await store.tasks.create(ws, stubId, null, policy),
        await store.tasks.create(ws, v2, null, policy), await store.tasks.create(ws, loose, null, policy)];
      await store.tasks.claimNext(stubId, "c1"); // a: RUNNING
      await store.tasks.finish(c.id, "CANCELLED", { error: "cancelled" });
      const ids = async (filter: Partial<TaskFilter>) => new Set((await store.tasks.list(ws, { limit: 100, offset: 0, ...filter })).map((t) => t.id));
      assert.deepEqual(await ids({}), new Set([a.id, b.id, c.id, d.id]));
      assert.deepEqual(await ids({ status: ["PENDING"] }), new Set([b.id, d.id]));
      assert.deepEqual(await ids({ status: ["RUNNING", "CANCELLED"] }), new Set([a.id, c.id]));
      assert.deepEqual(await ids({ status: ["EXPIRED"] }), new Set());
      assert.deepEqual(await ids({ stubId }), new Set([a.id, b.id]));
      assert.deepEqual(await ids({ stubId, status: ["PENDING"] }), new Set([b.id]));
      assert.deepEqual(await ids({ deployment: "jobs" }), new Set([a.id, b.id, c.id]), "every version of the deployment");
      assert.deepEqual(await ids({ deployment: "jobs", status: ["CANCELLED", "PENDING"] }), new Set([b.id, c.id]));
      assert.deepEqual(await ids({ deployment: "gone" }), new Set(), "a deleted deployment names no tasks");
      assert.deepEqual(await ids({ deployment: "nothing" }), new Set());
      const page = await store.tasks.list(ws, { limit: 1, offset: 1, deployment: "jobs" });
      assert.equal(page.length, 1);
      assert.deepEqual(page[0]?.stubName, "q", "listings keep the stub's name");
      // Another workspace sees none of it, whatever it names.
      const other = (await store.workspaces.create(`tasks-other-${Math.random().toString(36).slice(2, 8)}`, "workspace")).workspace.id;
      await store.deployments.create(other, stubId, "jobs").catch(() => undefined);
      for (const filter of [{}, { stubId }, { deployment: "jobs" }, { status: ["PENDING" as const] }]) {
        assert.deepEqual(await store.tasks.list(other, { limit: 100, offset: 0, ...filter }), [], JSON.stringify(filter));
      }
    });
  });
}
