/** The SQLite store: the shared conformance suite, plus what only a file-backed SQLite store has. */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Beta9Error, hashStubConfig, normalizeStubConfig } from "@beta9/protocol";
import { runTaskConformance } from "../conformance-tasks.js";
import { runImageConformance } from "../conformance-images.js";
import { runScheduleConformance } from "../conformance-schedules.js";
import { runStoreConformance } from "../conformance.js";
import { MigrationError, migrations } from "./migrations.js";
import { SqliteStore } from "./store.js";

const root = mkdtempSync(join(tmpdir(), "beta9-sqlite-store-"));
after(() => rmSync(root, { recursive: true, force: true }));

let files = 0;
/** A path for a new database file in its own fresh directory. */
const freshPath = (): string => join(mkdtempSync(join(root, `db-${files++}-`)), "beta9.db");

runStoreConformance("sqlite", async () => new SqliteStore(freshPath()));
runTaskConformance("sqlite", async () => new SqliteStore(freshPath()));
runScheduleConformance("sqlite", async () => new SqliteStore(freshPath()));
runImageConformance("sqlite", async () => new SqliteStore(freshPath()));

interface MigrationRow { version: number; name: string; applied_at: string }

function readMigrations(path: string): MigrationRow[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").all() as MigrationRow[];
  } finally {
    db.close();
  }
}

describe("sqlite store", () => {
  it("records every migration and does not re-apply them when the file is reopened", async () => {
    const path = freshPath();
    const store = new SqliteStore(path);
    const newest = migrations.at(-1)?.version;
    assert.equal(store.schemaVersion, newest);
    const boot = await store.workspaces.bootstrap("default");
    assert.ok(boot);
    await store.close();

    const recorded = readMigrations(path);
    assert.deepEqual(recorded.map(({ version, name }) => ({ version, name })), migrations.map(({ version, name }) => ({ version, name })));

    const reopened = new SqliteStore(path);
    try {
      assert.equal(reopened.schemaVersion, newest);
      assert.deepEqual(readMigrations(path), recorded);
      assert.deepEqual(await reopened.workspaces.get(boot.workspace.id), boot.workspace);
      assert.deepEqual(await reopened.tokens.authenticate(boot.token.key),
        { id: boot.token.id, workspaceId: boot.workspace.id, type: "admin" });
      assert.equal(await reopened.workspaces.bootstrap("again"), undefined);
    } finally {
      await reopened.close();
    }
  });

  it("refuses a database written by a newer beta9, and leaves it closed", async () => {
    const path = freshPath();
    await new SqliteStore(path).close();
    const newer = (migrations.at(-1)?.version ?? 0) + 1;
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
      .run(newer, "from the future", new Date().toISOString());
    db.close();

    assert.throws(() => new SqliteStore(path), (err: unknown) => {
      assert.ok(err instanceof MigrationError, `expected a MigrationError, got ${String(err)}`);
      assert.match(err.message, /upgrade/i);
      assert.match(err.message, new RegExp(`\\b${newer}\\b`));
      return true;
    });
    assert.equal(readMigrations(path).at(-1)?.version, newer);
    // No connection may be left open: leaving WAL mode needs every other connection closed.
    const check = new Database(path, { timeout: 200 });
    try {
      assert.equal(check.pragma("journal_mode = DELETE", { simple: true }), "delete");
    } finally {
      check.close();
    }
  });

  it("keeps the file in WAL mode", async () => {
    const path = freshPath();
    const store = new SqliteStore(path);
    try {
      const db = new Database(path, { readonly: true });
      try {
        assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
      } finally {
        db.close();
      }
    } finally {
      await store.close();
    }
  });

  it("a rejected write changes nothing in the file", async () => {
    const store = new SqliteStore(freshPath());
    try {
      const { workspace, token } = await store.workspaces.create("taken", "admin");
      const app = await store.apps.getOrCreate(workspace.id, "app");
      const config = normalizeStubConfig("endpoint", {});
      const { stub: serve } = await store.stubs.getOrCreate({
        workspaceId: workspace.id, appId: app.id, name: "h", type: "endpoint/serve", objectId: null,
        config, configHash: hashStubConfig(config),
      });
      await store.pools.create("gpu", "");
      const before = store.dumpForTests();
      const rejected = [
        () => store.workspaces.create("taken", "workspace"),
        () => store.deployments.create(workspace.id, serve.id, "api"),
        () => store.deployments.create(workspace.id, "no-such-stub", "api"),
        () => store.tasks.create(workspace.id, "no-such-stub"),
        () => store.pools.create("gpu", "again"),
        () => store.tokens.revoke(workspace.id, token.id),
      ];
      for (const write of rejected) await assert.rejects(write(), Beta9Error);
      assert.equal(store.dumpForTests(), before);
    } finally {
      await store.close();
    }
  });
});
