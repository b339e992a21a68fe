/**
 * Store conformance for deployed schedules (part of the shared suite, kept in its own file): the
 * tick claim that keeps a schedule from firing twice, and which schedules are live.
 */
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { hashStubConfig, normalizeStubConfig, type StubConfigInput, type StubKind, type StubType } from "@beta9/protocol";
import type { Store } from "./types.js";

export function runScheduleConformance(backendName: string, open: () => Promise<Store>): void {
  describe(`${backendName} store: schedules`, () => {
    let store: Store;
    let ws: string;
    beforeEach(async () => {
      store = await open();
      ws = (await store.workspaces.create(`sched-${Math.random().toString(36).slice(2, 8)}`, "workspace")).workspace.id;
    });
    afterEach(async () => store.close());

    async function stub(name: string, type: StubType = "schedule/deployment", input: StubConfigInput = { when: "* * * * *" }) {
      const app = await store.apps.getOrCreate(ws, "app");
      const config = normalizeStubConfig(type.split("/")[0] as StubKind, input);
      return (await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name, type, objectId: null, config, configHash: hashStubConfig(config) })).stub;
    }

    it("claims a tick once; an older tick never, a newer one once", async () => {
      const s = await stub("every-minute");
      assert.equal(await store.schedules.lastTick(s.id), undefined);
      assert.equal(await store.schedules.claimTick(s.id, "2025-01-01T10:00:00.000Z"), true);
      assert.equal(await store.schedules.claimTick(s.id, "2025-01-01T10:00:00.000Z"), false);
      assert.equal(await store.schedules.claimTick(s.id, "2025-01-01T09:59:00.000Z"), false);
      assert.equal(await store.schedules.lastTick(s.id), "2025-01-01T10:00:00.000Z");
      assert.equal(await store.schedules.claimTick(s.id, "2025-01-01T10:01:00.000Z"), true);
      assert.equal(await store.schedules.lastTick(s.id), "2025-01-01T10:01:00.000Z");
      // Ticks of different stubs are independent.
      const other = await stub("other");
      assert.equal(await store.schedules.claimTick(other.id, "2025-01-01T10:00:00.000Z"), true);
    });

    it("concurrent claims of one tick: exactly one wins", async () => {
      const s = await stub("race");
      const wins = await Promise.all(Array.from({ length: 8 }, () => store.schedules.claimTick(s.id, "2025-01-01T10:00:00.000Z")));
      assert.equal(wins.filter(Boolean).length, 1);
    });

    it("activeSchedules: deployed schedules only, not stopped, deleted or other kinds", async () => {
      const live = await stub("live");
      const stopped = await stub("stopped", "schedule/deployment", { when: "@hourly" });
      const deleted = await stub("deleted", "schedule/deployment", { when: "@daily" });
      await stub("never-deployed", "schedule/deployment", { when: "@weekly" });
      const endpoint = await stub("api", "endpoint/deployment", {});
      const d1 = await store.deployments.create(ws, live.id, "live");
      await store.deployments.create(ws, live.id, "live"); // a second version of the same stub: listed once
      const d2 = await store.deployments.create(ws, stopped.id, "stopped");
      await store.deployments.setActive(ws, d2.id, false);
      const d3 = await store.deployments.create(ws, deleted.id, "deleted");
      await store.deployments.delete(ws, d3.id);
      await store.deployments.create(ws, endpoint.id, "api");

      const active = await store.schedules.activeSchedules();
      assert.deepEqual(active.map((s) => s.id), [live.id]);
      assert.equal(active[0]?.config.when, "* * * * *");
      assert.equal(active[0]?.type, "schedule/deployment");
      assert.equal(active[0]?.deployedAt, d1.createdAt);

      await store.deployments.setActive(ws, d2.id, true);
      assert.deepEqual(new Set((await store.schedules.activeSchedules()).map((s) => s.id)), new Set([live.id, stopped.id]));
    });
  });
}
