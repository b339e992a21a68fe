/**
 * The Postgres store: the shared conformance suite on a real Postgres server this file starts
 * (initdb in a temp dir, a unix socket only), plus what only a shared store must get right: two
 * store instances on one database behave like two gateways.
 */
import { after, before, describe, it, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { createInterface } from "node:readline";
import pg from "pg";
import { hashStubConfig, normalizeStubConfig } from "@beta9/protocol";
import { runTaskConformance } from "../conformance-tasks.js";
import { runImageConformance } from "../conformance-images.js";
import { runScheduleConformance } from "../conformance-schedules.js";
import { runStoreConformance } from "../conformance.js";
import { StoreUnavailableError } from "../open.js";
import { MigrationError, migrations } from "../sqlite/migrations.js";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "../../testing/postgres.js";
import { pgMigrations } from "./migrations.js";
import { PostgresStore } from "./store.js";

test("the Postgres migrations match the SQLite ones: same versions, same names", () => {
  assert.deepEqual(pgMigrations.map(({ version, name }) => ({ version, name })), migrations.map(({ version, name }) => ({ version, name })));
});

describe("opening an unreachable Postgres store fails fast with StoreUnavailableError", () => {
  it("a refused connection", async () => {
    // A port that was just free: nothing listens there.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    await assert.rejects(PostgresStore.open(`postgres://beta9:secret-pw@127.0.0.1:${port}/beta9`), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError, String(err));
      assert.match(err.message, /cannot connect to the Postgres store postgres:\/\/beta9:\*\*\*@127\.0\.0\.1/);
      assert.match(err.message, /ECONNREFUSED/);
      assert.doesNotMatch(err.message, /secret-pw/, "the password never shows");
      return true;
    });
  });

  it("a server that accepts and never answers: the connect timeout ends the wait", async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as { port: number };
      await assert.rejects(PostgresStore.open(`postgres://beta9@127.0.0.1:${port}/beta9?connect_timeout=1`), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, String(err));
        assert.match(err.message, /no answer within 1 s/);
        return true;
      });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

const unavailable = postgresUnavailableReason();
if (unavailable) {
  test("postgres store conformance", { skip: unavailable }, () => {});
} else {
  let server: TestPostgres | undefined;
  before(async () => {
    server = await startTestPostgres();
  });
  after(async () => {
    await server?.close();
  });
  async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  /**
   * An empty store for each conformance test: one migrated database, emptied before each open
   * (TRUNCATE is much cheaper than creating and migrating a database per test; the tests below
   * that are about migrations and several gateways each get a database of their own).
   */
  let shared: string | undefined;
  const fresh = async () => {
    if (shared === undefined) {
      const url = await server!.createDatabase();
      await (await PostgresStore.open(url)).close();
      shared = url;
    }
    await withClient(shared, async (c) => {
      const tables = (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`)).rows;
      await c.query(`TRUNCATE ${tables.map((t) => pg.escapeIdentifier(t.tablename)).join(", ")} RESTART IDENTITY`);
    });
    return PostgresStore.open(shared);
  };

  runStoreConformance("postgres", fresh);
  runTaskConformance("postgres", fresh);
  runScheduleConformance("postgres", fresh);
  runImageConformance("postgres", fresh);

  /** Two stores on one new database, as two gateways would be; closed after `fn`, even if it throws. */
  async function twoGateways(fn: (a: PostgresStore, b: PostgresStore, url: string) => Promise<void>): Promise<void> {
    const url = await server!.createDatabase();
    const opened: PostgresStore[] = [];
    try {
      opened.push(await PostgresStore.open(url));
      opened.push(await PostgresStore.open(url));
      await fn(opened[0]!, opened[1]!, url);
    } finally {
      for (const s of opened) await s.close();
    }
  }

  async function queueStub(store: PostgresStore, type: "taskqueue/deployment" | "schedule/deployment" = "taskqueue/deployment") {
    const ws = (await store.workspaces.create(`ws-${Math.random().toString(36).slice(2, 8)}`, "workspace")).workspace.id;
    const app = await store.apps.getOrCreate(ws, "app");
    const config = normalizeStubConfig(type.split("/")[0] as "taskqueue", type === "schedule/deployment" ? { when: "* * * * *" } : {});
    const { stub } = await store.stubs.getOrCreate({ workspaceId: ws, appId: app.id, name: "q", type, objectId: null, config, configHash: hashStubConfig(config) });
    return { ws, stub };
  }

  /** Stores on one database as gateways with these ids (100 ms heartbeats); `opened` for the cleanup. */
  function gatewaysOn(url: string) {
    const opened: PostgresStore[] = [];
    const open = async (gatewayId: string) => {
      const store = await PostgresStore.open(url, { gatewayId, heartbeatMs: 100 });
      opened.push(store);
      return store;
    };
    return { open, opened };
  }

  describe("postgres store", () => {
    it("records every migration once; reopening applies none again and keeps the data", async () => {
      const url = await server!.createDatabase();
      const first = await PostgresStore.open(url);
      let boot;
      try {
        assert.equal(first.schemaVersion, migrations.at(-1)?.version);
        boot = await first.workspaces.bootstrap("default");
        assert.ok(boot);
      } finally {
        await first.close();
      }
      const recorded = await withClient(url, async (c) => (await c.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")).rows);
      assert.deepEqual(recorded.map(({ version, name }) => ({ version, name })), migrations.map(({ version, name }) => ({ version, name })));
      const again = await PostgresStore.open(url);
      try {
        assert.deepEqual(await withClient(url, async (c) => (await c.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")).rows), recorded);
        assert.deepEqual(await again.workspaces.get(boot.workspace.id), boot.workspace);
        assert.deepEqual(await again.tokens.authenticate(boot.token.key), { id: boot.token.id, workspaceId: boot.workspace.id, type: "admin" });
      } finally {
        await again.close();
      }
    });

    it("refuses a database written by a newer beta9", async () => {
      const url = await server!.createDatabase();
      await (await PostgresStore.open(url)).close();
      const newer = (migrations.at(-1)?.version ?? 0) + 1;
      await withClient(url, (c) => c.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', now())", [newer]));
      await assert.rejects(PostgresStore.open(url), (err: unknown) => {
        assert.ok(err instanceof MigrationError, String(err));
        assert.match(err.message, new RegExp(`\\b${newer}\\b.*upgrade`));
        return true;
      });
    });

    it("two gateways starting on an empty database: both migrate safely, one bootstraps", async () => {
      const url = await server!.createDatabase();
      const opened = await Promise.allSettled([PostgresStore.open(url), PostgresStore.open(url)]);
      try {
        const [a, b] = opened.map((o) => (o.status === "fulfilled" ? o.value : assert.fail(String(o.reason))));
        const boots = await Promise.all([a!.workspaces.bootstrap("default"), b!.workspaces.bootstrap("default")]);
        assert.equal(boots.filter(Boolean).length, 1);
        assert.equal((await b!.workspaces.list({ limit: 10, offset: 0 })).length, 1);
      } finally {
        for (const o of opened) if (o.status === "fulfilled") await o.value.close();
      }
    });

    it("two gateways claiming one queue take each task exactly once", async () => {
      await twoGateways(async (a, b) => {
        const { ws, stub } = await queueStub(a);
        const put = await Promise.all(Array.from({ length: 30 }, (_, n) => (n % 2 ? a : b).tasks.create(ws, stub.id, { n })));
        const claims = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? b : a).tasks.claimNext(stub.id, `c${i}`)));
        const claimed = claims.filter((t) => t !== undefined);
        assert.equal(claimed.length, 30);
        assert.deepEqual(new Set(claimed.map((t) => t.id)), new Set(put.map((t) => t.id)));
        for (const t of claimed) assert.equal(t.inputJson, JSON.stringify({ n: put.findIndex((p) => p.id === t.id) }));
        assert.equal(await a.tasks.inflight(stub.id), 30);
      });
    });

    it("a restarting gateway re-queues only its own running attempts; one killed (kill -9) or stopped has its attempts taken over by another, once", async () => {
      const url = await server!.createDatabase();
      const { open, opened } = gatewaysOn(url);
      // Gateway A in a process of its own, so that it can be killed as a crash kills it.
      let child: ChildProcess | undefined;
      try {
        const b = await open("gw-b");
        const { ws, stub } = await queueStub(b);
        for (const n of [1, 2, 3, 4, 5]) await b.tasks.create(ws, stub.id, { n }, { maxRetries: 3, timeout: 60, ttl: 3600 });
        const script = `const { PostgresStore } = await import(${JSON.stringify(new URL("./store.js", import.meta.url).href)});
          const a = await PostgresStore.open(${JSON.stringify(url)}, { gatewayId: "gw-a", heartbeatMs: 100 });
          const ids = [(await a.tasks.claimNext(${JSON.stringify(stub.id)}, "ca1")).id, (await a.tasks.claimNext(${JSON.stringify(stub.id)}, "ca2")).id];
          console.log(JSON.stringify(ids));
          setInterval(() => {}, 1000);`;
        child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
        const [line] = await once(createInterface({ input: child.stdout! }), "line") as [string];
        const onA = JSON.parse(line) as string[];
        const onB = (await b.tasks.claimNext(stub.id, "cb1"))!.id;
        // B restarts (same id): only its attempt is retried; A's two run on.
        await b.close();
        const b2 = await open("gw-b");
        assert.deepEqual(await b2.tasks.requeueRunning(), [{ id: onB, stubId: stub.id, status: "RETRY" }]);
        assert.deepEqual(await Promise.all(onA.map(async (id) => (await b2.tasks.getAny(id))!.status)), ["RUNNING", "RUNNING"]);
        // A is alive: nothing is an orphan (B2 looks only once its own heartbeat is steady, 6 beats).
        await new Promise((r) => setTimeout(r, 700));
        assert.deepEqual(await b2.tasks.requeueOrphaned(), []);

        // A killed: once its heartbeat is 6 beats old, B2 takes its attempts over, once.
        child.kill("SIGKILL");
        await once(child, "exit");
        let adopted: Awaited<ReturnType<typeof b2.tasks.requeueOrphaned>> = [];
        for (let i = 0; i < 100 && adopted.length === 0; i++) {
          await new Promise((r) => setTimeout(r, 100));
          adopted = await b2.tasks.requeueOrphaned();
        }
        assert.deepEqual(new Set(adopted.map((t) => t.id)), new Set(onA));
        assert.ok(adopted.every((t) => t.status === "RETRY"));
        assert.deepEqual(await b2.tasks.requeueOrphaned(), [], "taken over once");
        const retried = await b2.tasks.getAny(onA[0]!);
        assert.deepEqual([retried?.status, retried?.retries, retried?.error], ["RETRY", 1, "the gateway running the attempt stopped or lost the database"]);

        // B2 resumes one of them on the container that ran it (another container would wait
        // RESUME_ELSEWHERE_AFTER_MS); A comes back (same id) with its lost attempt's late outcome:
        // it does not land on B2's attempt.
        assert.equal(await b2.tasks.claimNext(stub.id, "cb2").then((t) => t && onA.includes(t.id)), false, "not another container's, yet");
        const again = (await b2.tasks.claimNext(stub.id, "ca1"))!;
        assert.ok(onA.includes(again.id));
        const aBack = await open("gw-a");
        assert.deepEqual(await aBack.tasks.requeueRunning(), [], "nothing of A's own is left running");
        assert.equal(await aBack.tasks.finish(again.id, "COMPLETE", { result: "late" }), false);
        assert.equal(await aBack.tasks.retry(again.id, "late failure", 0), false);
        assert.deepEqual([(await b2.tasks.getAny(again.id))?.status, (await b2.tasks.getAny(again.id))?.containerId], ["RUNNING", "ca1"]);
        assert.equal(await b2.tasks.finish(again.id, "COMPLETE", { result: "done" }), true, "the attempt's own gateway ends it");
        await aBack.close();

        // A gateway that stops cleanly says goodbye: its attempt is an orphan at the others' next look.
        const c = await open("gw-c");
        const onC = (await c.tasks.claimNext(stub.id, "cc1"))!;
        assert.deepEqual(await b2.tasks.requeueOrphaned(), []);
        await c.close();
        assert.deepEqual((await b2.tasks.requeueOrphaned()).map((t) => t.id), [onC.id]);
      } finally {
        if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        for (const s of opened) await s.close();
      }
    });

    it("image builds: a starting gateway fails its own interrupted builds, never a live gateway's; a stopped gateway's are failed by the others; offers have one taker", async () => {
      const { open, opened } = gatewaysOn(await server!.createDatabase());
      try {
        const a = await open("gw-a");
        const ws = (await a.workspaces.create("ws-images", "workspace")).workspace.id;
        assert.equal((await a.images.request(ws, "img-a", { base: { kind: "scratch" } })).build, true);
        const b = await open("gw-b");
        assert.equal((await b.images.request(ws, "img-b", { base: { kind: "scratch" } })).build, true);
        // B restarts: its own build is failed, A's (alive) builds on.
        await b.close();
        const b2 = await open("gw-b");
        assert.equal(await b2.images.failInterrupted(), 1);
        assert.deepEqual([(await b2.images.getAny("img-b"))?.status, (await b2.images.getAny("img-a"))?.status], ["failed", "building"]);
        await new Promise((r) => setTimeout(r, 700)); // B2's heartbeat steady (6 beats)
        assert.equal(await b2.images.failOrphaned(), 0, "A is alive");
        // A stops (its heartbeat row goes): B2 fails A's build at its next look; asked again, it builds anew.
        await a.close();
        assert.equal(await b2.images.failOrphaned(), 1);
        const failed = await b2.images.getAny("img-a");
        assert.deepEqual([failed?.status, failed?.error], ["failed", "the gateway stopped during the build; request it again"]);
        assert.equal((await b2.images.request(ws, "img-a", { base: { kind: "scratch" } })).build, true);
        assert.equal(await b2.images.failOrphaned(), 0, "its own build is not an orphan");

        // Offered (B2 has no worker): one taker among several; a taken offer cannot be withdrawn.
        const c = await open("gw-c");
        const d = await open("gw-d");
        let heard = 0;
        c.images.onOffered(() => (heard += 1));
        assert.equal(await c.images.offer("img-a"), false, "only the build's own gateway offers it");
        assert.equal(await b2.images.offer("img-a"), true);
        assert.equal(await c.images.failInterrupted(), 0, "another gateway starting leaves a live gateway's offer alone");
        assert.equal(await b2.images.takeOffered(), undefined, "a gateway does not take its own offer");
        const takes = await Promise.all([c.images.takeOffered(), d.images.takeOffered(), c.images.takeOffered()]);
        assert.deepEqual(takes.filter(Boolean).map((t) => [t!.id, t!.workspaceId]), [["img-a", ws]]);
        assert.deepEqual(takes.find(Boolean)?.spec, { base: { kind: "scratch" } });
        assert.equal(await b2.images.withdraw("img-a"), false);
        for (let i = 0; i < 50 && heard === 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.equal(heard, 1, "the other gateways hear of an offer");
        // Offered and not taken: withdrawn once.
        assert.equal((await b2.images.request(ws, "img-c", { base: { kind: "scratch" }, n: 2 })).build, true);
        assert.equal(await b2.images.offer("img-c"), true);
        assert.deepEqual([await b2.images.withdraw("img-c"), await b2.images.withdraw("img-c")], [true, false]);
        // An offer whose gateway stops is failed by the others (nobody may ever take it).
        assert.equal((await b2.images.request(ws, "img-d", { base: { kind: "scratch" }, n: 3 })).build, true);
        assert.equal(await b2.images.offer("img-d"), true);
        await b2.close();
        await new Promise((r) => setTimeout(r, 700)); // C's heartbeat steady
        assert.equal(await c.images.failOrphaned(), 2, "img-d (offered) and img-c (withdrawn, B2's own again)");
        assert.deepEqual([(await c.images.getAny("img-c"))?.status, (await c.images.getAny("img-d"))?.status], ["failed", "failed"]);
      } finally {
        for (const s of opened) await s.close();
      }
    });

    it("two gateways claiming one cron tick: it fires once", async () => {
      await twoGateways(async (a, b) => {
        const { stub } = await queueStub(a, "schedule/deployment");
        const tick = "2025-01-01T10:00:00.000Z";
        const wins = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).schedules.claimTick(stub.id, tick)));
        assert.equal(wins.filter(Boolean).length, 1);
        assert.equal(await b.schedules.lastTick(stub.id), tick);
      });
    });

    it("deployments written by one gateway are listed and resolved by the other at once (no stale cache)", async () => {
      await twoGateways(async (a, b) => {
        const { ws, stub } = await queueStub(a);
        const page = { limit: 10, offset: 0 };
        assert.deepEqual(await a.deployments.list(ws, page), []);
        assert.equal(await a.deployments.resolve(ws, "q", "latest"), undefined);
        const d = await b.deployments.create(ws, stub.id, "q");
        assert.deepEqual(await a.deployments.list(ws, page), [d]);
        assert.equal((await a.deployments.resolve(ws, "q", "latest"))?.id, d.id);
        await b.deployments.setActive(ws, d.id, false);
        assert.equal(await a.deployments.resolve(ws, "q", "latest"), undefined);
        assert.deepEqual((await a.deployments.list(ws, page)).map((x) => x.active), [false]);
        const versions = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).deployments.create(ws, stub.id, "q")));
        assert.deepEqual(versions.map((v) => v.version).sort((x, y) => x - y), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      });
    });

    it("a token revoked on one gateway is refused by the other, which hears of it (NOTIFY)", async () => {
      await twoGateways(async (a, b) => {
        const { workspace } = await a.workspaces.create("ws", "admin");
        const token = await a.tokens.create(workspace.id, "workspace");
        assert.ok(await b.tokens.authenticate(token.key));
        const heard = new Promise<string>((resolve) => {
          const stop = a.tokens.onRevoked((id) => {
            stop();
            resolve(id);
          });
        });
        const ownHeard: string[] = [];
        const stopOwn = b.tokens.onRevoked((id) => ownHeard.push(id));
        await b.tokens.revoke(workspace.id, token.id);
        assert.equal(await a.tokens.authenticate(token.key), undefined, "no cached key outlives the revocation");
        assert.equal(await heard, token.id);
        stopOwn();
        assert.deepEqual(ownHeard, [token.id], "the revoking gateway announces it once, not again on its own NOTIFY");
      });
    });

    it("the last admin token cannot be revoked even by two gateways revoking two admin tokens at once", async () => {
      await twoGateways(async (a, b) => {
        const boot = (await a.workspaces.bootstrap("default"))!;
        const second = await a.tokens.create(boot.workspace.id, "admin");
        const results = await Promise.allSettled([a.tokens.revoke(boot.workspace.id, boot.token.id), b.tokens.revoke(boot.workspace.id, second.id)]);
        assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
        const active = await Promise.all([boot.token.id, second.id].map(async (id) => (await b.tokens.get(boot.workspace.id, id))?.active));
        assert.deepEqual(active.filter(Boolean).length, 1);
      });
    });

    it("an image requested by two gateways at once is built once", async () => {
      await twoGateways(async (a, b) => {
        const { ws } = await queueStub(a);
        const requests = await Promise.all([a, b, a, b].map((s) => s.images.request(ws, "img-1", { base: "debian", commands: ["true"] })));
        assert.equal(requests.filter((r) => r.build).length, 1);
        assert.deepEqual(requests[0]!.image.spec, { base: "debian", commands: ["true"] });
      });
    });
  });
}
