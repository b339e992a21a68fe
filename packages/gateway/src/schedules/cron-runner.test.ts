/** The cron runner on a real SQLite store with a fake clock: once per tick, across runners and restarts. */
import { describe, it, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import { Cron } from "croner";
import { hashStubConfig, normalizeStubConfig, type Deployment, type Stub } from "@beta9/protocol";
import { SqliteStore } from "../store/sqlite/store.js";
import { CronRunner, latestTick } from "./cron-runner.js";

const root = mkdtempSync(join(tmpdir(), "beta9-cron-"));
after(() => rmSync(root, { recursive: true, force: true }));

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const iso = (ms: number): string => new Date(ms).toISOString();
/** The first multiple of `unit` strictly after `ms`. */
const nextBoundary = (ms: number, unit: number): number => Math.floor(ms / unit) * unit + unit;

describe("cron runner", () => {
  let path: string;
  let store: SqliteStore;
  let ws: string;
  let clock: number;
  let fired: { runner: string; stubId: string; at: string }[];
  const stores: SqliteStore[] = [];
  const runners: CronRunner[] = [];
  const errors: unknown[] = [];
  const logger = { info() {}, warn() {}, error: (o: unknown) => errors.push(o) } as unknown as Logger;

  beforeEach(async () => {
    path = join(mkdtempSync(join(root, "db-")), "gateway.db");
    store = open();
    ws = (await store.workspaces.create("cron", "workspace")).workspace.id;
    fired = [];
    errors.length = 0;
  });
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    for (const s of stores.splice(0)) await s.close();
  });

  function open(): SqliteStore {
    const s = new SqliteStore(path);
    stores.push(s);
    return s;
  }

  function runner(name: string, on: SqliteStore = store, put?: (stub: Stub) => Promise<unknown>): CronRunner {
    const r = new CronRunner({
      store: on, logger, now: () => new Date(clock),
      put: put ?? (async (stub, at) => void fired.push({ runner: name, stubId: stub.id, at: at.toISOString() })),
    });
    runners.push(r);
    return r;
  }

  async function deploy(name: string, when: string): Promise<{ stub: Stub; deployment: Deployment; at: number }> {
    const app = await store.apps.getOrCreate(ws, "app");
    const config = normalizeStubConfig("schedule", { when });
    const { stub } = await store.stubs.getOrCreate({
      workspaceId: ws, appId: app.id, name, type: "schedule/deployment", objectId: null, config, configHash: hashStubConfig(config),
    });
    const deployment = await store.deployments.create(ws, stub.id, name);
    return { stub, deployment, at: Date.parse(deployment.createdAt) };
  }

  /** Sets the clock and runs `times` checks on each runner. */
  async function at(ms: number, rs: CronRunner[], times = 1): Promise<void> {
    clock = ms;
    for (let i = 0; i < times; i++) for (const r of rs) await r.tick();
  }

  it("fires once per minute tick, however often it checks", async () => {
    const { stub, at: deployed } = await deploy("every-minute", "* * * * *");
    const r = runner("a");
    const m1 = nextBoundary(deployed, MINUTE);
    await at(deployed, [r], 5);
    assert.equal(fired.length, 0, "no tick between the deployment and now");
    await at(m1 - 1, [r], 3);
    assert.equal(fired.length, 0);
    await at(m1, [r], 10);
    await at(m1 + 30_000, [r], 10);
    assert.deepEqual(fired, [{ runner: "a", stubId: stub.id, at: iso(m1) }]);
    await at(m1 + MINUTE + 1500, [r], 10);
    await Promise.all([r.tick(), r.tick(), r.tick()]);
    assert.deepEqual(fired.map((f) => f.at), [iso(m1), iso(m1 + MINUTE)]);
    assert.equal(await store.schedules.lastTick(stub.id), iso(m1 + MINUTE));
    assert.deepEqual(errors, []);
  });

  it("two runners on one store (two gateway processes) never fire the same tick twice", async () => {
    const { at: deployed } = await deploy("shared", "* * * * *");
    const a = runner("a");
    const b = runner("b", open()); // its own connection to the same file
    const m1 = nextBoundary(deployed, MINUTE);
    for (let m = 0; m < 6; m++) {
      clock = m1 + m * MINUTE + (m % 3) * 7000;
      await Promise.all([a.tick(), b.tick(), a.tick(), b.tick()]);
      await b.tick();
      await a.tick();
    }
    assert.deepEqual(fired.map((f) => f.at), Array.from({ length: 6 }, (_, m) => iso(m1 + m * MINUTE)));
    assert.equal(new Set(fired.map((f) => f.at)).size, 6);
    assert.deepEqual(errors, []);
  });

  it("after a restart: the tick already fired stays fired; ticks missed meanwhile fire once, the latest", async () => {
    const { stub, at: deployed } = await deploy("restart", "* * * * *");
    const m1 = nextBoundary(deployed, MINUTE);
    const before = runner("before");
    await at(m1 + 5000, [before], 3);
    assert.deepEqual(fired.map((f) => f.at), [iso(m1)]);
    await before.close();
    await store.close();

    store = open(); // the gateway comes back on the same data directory
    const afterRestart = runner("after", store);
    await at(m1 + 20_000, [afterRestart], 3);
    assert.deepEqual(fired.map((f) => f.at), [iso(m1)], "the fired tick is not fired again");
    // Down again for a while: m1+1 .. m1+4 pass without a check.
    await at(m1 + 4 * MINUTE + 10_000, [afterRestart], 5);
    assert.deepEqual(fired.map((f) => f.at), [iso(m1), iso(m1 + 4 * MINUTE)]);
    assert.deepEqual(fired.map((f) => f.runner), ["before", "after"]);
    assert.equal(fired[1]?.stubId, stub.id);
  });

  it("@hourly fires at the hour, once", async () => {
    const { at: deployed } = await deploy("hourly", "@hourly");
    const r = runner("a");
    const h = nextBoundary(deployed, HOUR);
    await at(h - 1000, [r], 3);
    assert.equal(fired.length, 0);
    for (const t of [h, h + 1, h + MINUTE, h + 59 * MINUTE]) await at(t, [r], 2);
    assert.deepEqual(fired.map((f) => f.at), [iso(h)]);
    await at(h + HOUR, [r]);
    assert.deepEqual(fired.map((f) => f.at), [iso(h), iso(h + HOUR)]);
  });

  it("a stopped or deleted deployment does not fire; a redeployed one starts again", async () => {
    const { deployment, at: deployed } = await deploy("stoppable", "* * * * *");
    const r = runner("a");
    const m1 = nextBoundary(deployed, MINUTE);
    await at(m1, [r]);
    assert.equal(fired.length, 1);
    await store.deployments.setActive(ws, deployment.id, false);
    await at(m1 + MINUTE, [r], 3);
    await at(m1 + 2 * MINUTE, [r], 3);
    assert.equal(fired.length, 1, "stopped: no fire");
    const never = await deploy("deleted", "* * * * *");
    await store.deployments.delete(ws, never.deployment.id);
    await at(m1 + 3 * MINUTE, [runner("fresh")], 3);
    assert.equal(fired.length, 1, "deleted: no fire");

    await store.deployments.setActive(ws, deployment.id, true);
    await at(m1 + 4 * MINUTE, [r]);
    assert.deepEqual(fired.map((f) => f.at), [iso(m1), iso(m1 + 4 * MINUTE)]);
  });

  it("errors are logged and never stop the loop or other schedules", async () => {
    const broken = await deploy("broken", "61 * * * *"); // passes the protocol's check, croner refuses it
    const good = await deploy("good", "* * * * *");
    let fail = true;
    const r = runner("a", store, async (stub) => {
      if (fail) throw new Error("dispatcher down");
      fired.push({ runner: "a", stubId: stub.id, at: "" });
    });
    const m1 = nextBoundary(Math.max(broken.at, good.at), MINUTE);
    await at(m1, [r], 3);
    assert.equal(fired.length, 0);
    assert.equal(errors.length, 2, "the refused expression once, the failed run once");
    fail = false;
    await at(m1 + MINUTE, [r], 3);
    assert.deepEqual(fired.map((f) => f.stubId), [good.stub.id]);

    await store.close(); // the store fails under it: logged, not thrown
    await at(m1 + 2 * MINUTE, [r]);
    assert.ok(errors.length > 2);
  });

  it("start() checks on its own every interval; close() stops it", async () => {
    const { at: deployed } = await deploy("timer", "* * * * *");
    clock = nextBoundary(deployed, MINUTE);
    const r = new CronRunner({ store, now: () => new Date(clock), intervalMs: 10, put: async () => void fired.push({ runner: "t", stubId: "", at: "" }) });
    runners.push(r);
    r.start();
    await new Promise((done) => setTimeout(done, 100));
    await r.close();
    assert.equal(fired.length, 1);
  });
});

describe("latestTick", () => {
  it("finds the latest tick after a point, however far back, without a burst", () => {
    const yearly = new Cron("@yearly", { utcOffset: 0 });
    const now = new Date("2031-06-15T12:00:00.000Z");
    assert.equal(latestTick(yearly, Date.parse("2020-03-01T00:00:00Z"), now)?.toISOString(), "2031-01-01T00:00:00.000Z");
    assert.equal(latestTick(yearly, Date.parse("2031-01-01T00:00:00Z"), now), undefined, "strictly after");
    const everyMinute = new Cron("* * * * *", { utcOffset: 0 });
    assert.equal(latestTick(everyMinute, Date.parse("2031-06-01T00:00:00Z"), now)?.toISOString(), "2031-06-15T12:00:00.000Z");
    const never = new Cron("0 0 30 2 *", { utcOffset: 0 });
    assert.equal(latestTick(never, Date.parse("2031-06-01T00:00:00Z"), now), undefined);
  });
});
