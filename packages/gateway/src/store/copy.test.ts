/**
 * Moving a data dir's SQLite store into Postgres: after the copy, the Postgres store answers every
 * read exactly as the SQLite store did (and authenticates the same tokens); a database that has
 * rows, or a data dir a gateway holds, is refused with nothing written. Real Postgres (initdb in a
 * temp dir), real SQLite.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { hashStubConfig, normalizeStubConfig } from "@beta9/protocol";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "../testing/postgres.js";
import { copySqliteToPostgres, StoreCopyRefusedError } from "./copy.js";
import { PostgresStore } from "./postgres/store.js";
import { SqliteStore } from "./sqlite/store.js";
import type { Store } from "./types.js";

const skip = postgresUnavailableReason();
const ALL = { limit: 1000, offset: 0 };
const cli = fileURLToPath(new URL("../../../cli/dist/main.js", import.meta.url));
let pg: TestPostgres | undefined;
const dirs: string[] = [];

before(async () => {
  if (!skip) pg = await startTestPostgres();
});
after(async () => {
  await pg?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "beta9-copy-"));
  dirs.push(dir);
  return dir;
}

/** A data dir whose store holds one of everything, a few hundred tasks (more than one INSERT batch) included. */
async function populated(): Promise<{ dir: string; adminKey: string; workspaceId: string }> {
  const dir = dataDir();
  const store = new SqliteStore(join(dir, "gateway.db"));
  try {
    const { workspace, token } = await store.workspaces.create("default", "admin");
    const other = await store.workspaces.create("team-b", "workspace");
    await store.tokens.create(workspace.id, "restricted", "clients");
    const revoked = await store.tokens.create(workspace.id, "workspace");
    await store.tokens.revoke(workspace.id, revoked.id);
    const app = await store.apps.getOrCreate(workspace.id, "app");
    const config = normalizeStubConfig("endpoint", { cpu: 0.5, keepWarmSeconds: 30 });
    const { stub } = await store.stubs.getOrCreate({ workspaceId: workspace.id, appId: app.id, name: "hello", type: "endpoint/deployment", objectId: null, config, configHash: hashStubConfig(config) });
    await store.deployments.create(workspace.id, stub.id, "hello");
    const v2 = await store.deployments.create(workspace.id, stub.id, "hello");
    await store.deployments.setActive(workspace.id, v2.id, false);
    for (let i = 0; i < 620; i++) {
      const task = await store.tasks.create(workspace.id, stub.id, { n: i, text: "ünïcode \u0000 kept" }, { maxRetries: 2, timeout: 60, ttl: 3600 });
      if (i % 3 === 0) await store.tasks.finish(task.id, "COMPLETE", { result: { square: i * i } });
      if (i % 3 === 1) await store.tasks.finish(task.id, "ERROR", { error: "boom" });
    }
    await store.objects.put(workspace.id, "a".repeat(64), 1234);
    await store.secrets.create(workspace.id, "OPENAI_API_KEY", "sealed-bytes");
    await store.pools.create("gpu", "GPU machines");
    const { machine } = await store.machines.create(workspace.id, "gpu");
    await store.machines.setFlags(workspace.id, machine.id, { cordoned: true, draining: false });
    const { image } = await store.images.request(other.workspace.id, "b".repeat(64), { base: "debian" });
    await store.images.markReady(image.id, 4096, "c".repeat(64));
    await store.schedules.claimTick(stub.id, "2026-01-01T10:00:00.000Z");
    await store.sandboxes.create({
      id: "sb-1", workspaceId: workspace.id, containerId: "ct-1", expiresAt: null,
      config: { imageId: null, cpuMillicores: 500, memoryMiB: 256, env: { A: "1" }, ttlSeconds: -1, pool: null, exposed: [{ port: 8000, public: false }] },
    });
    return { dir, adminKey: token.key, workspaceId: workspace.id };
  } finally {
    await store.close();
  }
}

/** Everything a gateway reads, through the Store interface only. */
async function snapshot(store: Store): Promise<unknown> {
  const workspaces = await store.workspaces.list(ALL);
  const per = await Promise.all(workspaces.map(async (w) => ({
    workspace: w,
    signingKey: await store.workspaces.signingKey(w.id),
    tokens: await store.tokens.list(w.id, ALL),
    apps: await store.apps.list(w.id, ALL),
    objects: await store.objects.list(w.id, ALL),
    stubs: await store.stubs.list(w.id, ALL),
    deployments: await store.deployments.list(w.id, ALL),
    tasks: await store.tasks.list(w.id, ALL),
    secrets: await store.secrets.list(w.id, ALL),
    machines: await store.machines.list(w.id, ALL),
    images: await store.images.list(w.id, ALL),
    sandboxes: await store.sandboxes.list(w.id, ALL),
  })));
  const stubs = per.flatMap((p) => p.stubs.map((s) => s.id));
  return {
    per,
    pools: await store.pools.list(ALL),
    sealed: await store.secrets.sealedAll(),
    ticks: await Promise.all(stubs.map((id) => store.schedules.lastTick(id))),
  };
}

test("after the copy, Postgres answers every read as the SQLite store did, and the same tokens sign in", { skip }, async () => {
  const { dir, adminKey, workspaceId } = await populated();
  const sqlite = new SqliteStore(join(dir, "gateway.db"));
  const before = await snapshot(sqlite);
  await sqlite.close();
  const url = await pg!.createDatabase();
  const heard: string[] = [];
  const result = await copySqliteToPostgres(dir, url, (table) => heard.push(table));
  assert.deepEqual(heard, result.tables.map((t) => t.table));
  assert.equal(result.tables.find((t) => t.table === "task")?.rows, 620);
  const copied = await PostgresStore.open(url);
  try {
    assert.deepEqual(await snapshot(copied), before);
    const auth = await copied.tokens.authenticate(adminKey);
    assert.equal(auth?.workspaceId, workspaceId);
    // Sequences go on after the copied rows: the next version of a name is 3.
    const stub = (await copied.stubs.list(workspaceId, ALL))[0]!;
    assert.equal((await copied.deployments.create(workspaceId, stub.id, "hello")).version, 3);
    const pending = (await copied.tasks.list(workspaceId, ALL)).find((t) => t.status === "PENDING")!;
    assert.deepEqual(await copied.tasks.input(pending.id), await (async () => {
      const source = new SqliteStore(join(dir, "gateway.db"));
      try {
        return await source.tasks.input(pending.id);
      } finally {
        await source.close();
      }
    })());
  } finally {
    await copied.close();
  }
});

test("a database with rows is refused, and nothing is written to it", { skip }, async () => {
  const { dir } = await populated();
  const url = await pg!.createDatabase();
  const first = await copySqliteToPostgres(dir, url);
  await assert.rejects(copySqliteToPostgres(dir, url), (err: unknown) => {
    assert.ok(err instanceof StoreCopyRefusedError, String(err));
    assert.match(err.message, /already has rows in workspace: copy into an empty database/);
    return true;
  });
  const store = await PostgresStore.open(url);
  try {
    assert.equal((await store.workspaces.list(ALL)).length, first.tables.find((t) => t.table === "workspace")!.rows);
  } finally {
    await store.close();
  }
});

test("a data dir a live gateway holds is refused (its later writes would stay behind)", { skip }, async () => {
  const { dir } = await populated();
  const holder = spawn("sleep", ["60"], { stdio: "ignore" });
  try {
    writeFileSync(join(dir, "gateway.pid"), String(holder.pid));
    await assert.rejects(copySqliteToPostgres(dir, await pg!.createDatabase()), (err: unknown) => {
      assert.ok(err instanceof StoreCopyRefusedError, String(err));
      assert.match(err.message, new RegExp(`another gateway \\(pid ${holder.pid}\\) is using .*stop it first`));
      return true;
    });
  } finally {
    holder.kill("SIGKILL");
  }
});

test("beta9 store migrate: copies, says what to run next; a non-Postgres URL is a usage error; a missing data dir exits 1", { skip }, async () => {
  const { dir } = await populated();
  const url = await pg!.createDatabase();
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  const ok = run("store", "migrate", "--data-dir", dir, "--to", url);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^task: 620 rows$/m);
  assert.match(ok.stdout, /^copied \d+ rows from .*gateway\.db to /m);
  assert.ok(ok.stdout.includes(`next: beta9 gateway --store '${url}' --data-dir '${dir}'`), ok.stdout);
  const usage = run("store", "migrate", "--data-dir", dir, "--to", "mysql://x");
  assert.equal(usage.status, 2, usage.stderr);
  assert.match(usage.stderr, /must be a postgres:\/\//);
  const missing = run("store", "migrate", "--data-dir", join(dir, "nope"), "--to", url, "--json");
  assert.equal(missing.status, 1, missing.stderr);
  assert.match(missing.stderr, /STORE_COPY_REFUSED.*no gateway database in/s);
});
