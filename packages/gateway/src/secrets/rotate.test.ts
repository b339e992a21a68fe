/**
 * Rotating the secrets key, on SQLite and on a throwaway Postgres: every secret re-sealed under the
 * new key only, values (what containers get injected) unchanged, dates unchanged; interrupted at
 * each step (a failure inside the transaction, after its commit, between the key files' moves),
 * nothing is lost: every secret opens with a key on disk at every point, and running it again
 * finishes. And the operator's command through the CLI, refused while a gateway holds the data dir.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { lockDataDir } from "../server.js";
import { PostgresStore } from "../store/postgres/store.js";
import { SqliteStore } from "../store/sqlite/store.js";
import type { SealedSecret, Store } from "../store/types.js";
import { postgresUnavailableReason, startTestPostgres, type TestPostgres } from "../testing/postgres.js";
import { rotateSecretsKey, type RotateOptions } from "./rotate.js";
import { Secrets } from "./secrets.js";
import { loadVaultKey, parseVaultKey, Vault } from "./vault.js";

const cli = fileURLToPath(new URL("../../../cli/dist/main.js", import.meta.url));
const pgSkip = postgresUnavailableReason();
let pg: TestPostgres | undefined;
const dirs: string[] = [];
const VALUES = { OPENAI_KEY: "sk-one", DB_URL: "postgres://u:p@h/db", EMPTYISH: " ", UNICODE: "ключ ✓" };

before(async () => {
  if (!pgSkip) pg = await startTestPostgres();
});
after(async () => {
  await pg?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  dir: string;
  store: Store & { close(): Promise<void> };
  workspaces: string[];
  oldKey: Buffer;
  dates: string;
}

async function setup(backend: "sqlite" | "postgres"): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "beta9-rotate-"));
  dirs.push(dir);
  const store = backend === "sqlite" ? new SqliteStore(join(dir, "gateway.db")) : await PostgresStore.open(await pg!.createDatabase());
  const oldKey = loadVaultKey(join(dir, "secrets.key"), undefined);
  const secrets = new Secrets(store.secrets, new Vault(oldKey));
  const workspaces: string[] = [];
  for (const name of ["rot-a", "rot-b"]) {
    const { workspace } = await store.workspaces.create(name, "admin");
    workspaces.push(workspace.id);
    for (const [k, v] of Object.entries(VALUES)) await secrets.create(workspace.id, k, `${v}-${name}`);
  }
  return { dir, store, workspaces, oldKey, dates: await dates(store, workspaces) };
}

async function dates(store: Store, workspaces: string[]): Promise<string> {
  const out = [];
  for (const ws of workspaces) out.push(...(await store.secrets.list(ws, { limit: 100, offset: 0 })));
  return JSON.stringify(out);
}

const keyIn = (path: string) => parseVaultKey(readFileSync(path, "utf8").trim(), path);

/** The values as a gateway started with `key` would inject them (Secrets.load fails if any does not open). */
async function injected(s: Setup, key: Buffer): Promise<Record<string, string>[]> {
  const secrets = new Secrets(s.store.secrets, new Vault(key));
  await secrets.load();
  return s.workspaces.map((ws) => secrets.env(ws, Object.keys(VALUES)));
}

const expected = (s: Setup) => s.workspaces.map((_, i) => Object.fromEntries(Object.entries(VALUES).map(([k, v]) => [k, `${v}-${["rot-a", "rot-b"][i]}`])));

/** Every secret opens with one of the key files on disk now (the invariant at every step). */
async function everyOpensWithAKeyOnDisk(s: Setup): Promise<void> {
  const keys = ["secrets.key", "secrets.key.new", "secrets.key.old"].map((f) => join(s.dir, f)).filter(existsSync).map(keyIn);
  for (const row of await s.store.secrets.sealedAll()) {
    assert.ok(keys.some((k) => opens(k, row)), `secret ${row.name} opens with a key on disk`);
  }
}

function opens(key: Buffer, row: SealedSecret): boolean {
  try {
    new Vault(key).open(row.workspaceId, row.name, row.sealed);
    return true;
  } catch {
    return false;
  }
}

function crashAt(stepName: NonNullable<Parameters<NonNullable<RotateOptions["step"]>>[0]>): RotateOptions["step"] {
  return (name) => {
    if (name === stepName) throw new Error(`crash at ${name}`);
  };
}

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`rotate-secrets-key on ${backend}`, { skip: backend === "postgres" ? pgSkip : undefined }, () => {
    test("every secret re-sealed under the new key only; injected values and dates unchanged; the old key file gone", async () => {
      const s = await setup(backend);
      try {
        const result = await rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets });
        assert.deepEqual(result, { rotated: 8, resumed: 0, keyFile: join(s.dir, "secrets.key") });
        const newKey = keyIn(join(s.dir, "secrets.key"));
        assert.ok(!newKey.equals(s.oldKey));
        assert.equal(statSync(join(s.dir, "secrets.key")).mode & 0o777, 0o600);
        assert.deepEqual(await injected(s, newKey), expected(s));
        await assert.rejects(injected(s, s.oldKey), /does not open/, "the old key opens nothing any more");
        assert.equal(await dates(s.store, s.workspaces), s.dates, "a rotation changes no secret's dates");
        assert.ok(!existsSync(join(s.dir, "secrets.key.new")) && !existsSync(join(s.dir, "secrets.key.old")));
      } finally {
        await s.store.close();
      }
    });

    test("a failure inside the transaction changes nothing; running it again finishes, to the same pending key", async () => {
      const s = await setup(backend);
      try {
        let n = 0;
        const failing = { ...s.store.secrets, sealedAll: () => s.store.secrets.sealedAll() } as typeof s.store.secrets;
        failing.resealAll = (fn) => s.store.secrets.resealAll((row) => {
          if (++n === 5) throw new Error("crash mid-way");
          return fn(row);
        });
        await assert.rejects(rotateSecretsKey({ dataDir: s.dir, secrets: failing }), /crash mid-way/);
        assert.deepEqual(await injected(s, s.oldKey), expected(s), "every secret still opens with the old key");
        await everyOpensWithAKeyOnDisk(s);
        const pending = keyIn(join(s.dir, "secrets.key.new"));
        const again = await rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets });
        assert.equal(again.rotated, 8);
        assert.ok(keyIn(join(s.dir, "secrets.key")).equals(pending), "the interrupted rotation's key is the one finished");
        assert.deepEqual(await injected(s, pending), expected(s));
      } finally {
        await s.store.close();
      }
    });

    for (const step of ["new-key-written", "resealed", "old-key-copied", "swapped"] as const) {
      test(`interrupted after "${step}": every secret opens with a key on disk; running it again finishes`, async () => {
        const s = await setup(backend);
        try {
          await assert.rejects(rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets, step: crashAt(step) }), /crash at/);
          await everyOpensWithAKeyOnDisk(s);
          const again = await rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets });
          assert.equal(again.rotated, 8);
          if (step === "resealed" || step === "old-key-copied") assert.equal(again.resumed, 8, "the committed re-seal is recognised, not redone blindly");
          const key = keyIn(join(s.dir, "secrets.key"));
          assert.deepEqual(await injected(s, key), expected(s));
          assert.ok(!existsSync(join(s.dir, "secrets.key.new")));
        } finally {
          await s.store.close();
        }
      });
    }

    test("a secret that neither key opens stops the rotation naming it, and nothing changes", async () => {
      const s = await setup(backend);
      try {
        const stray = new Vault(randomBytes(32)).seal(s.workspaces[0]!, "STRAY", "x");
        await s.store.secrets.create(s.workspaces[0]!, "STRAY", stray);
        await assert.rejects(rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets }), /secret STRAY .*opens with neither/);
        const rows = await s.store.secrets.sealedAll();
        assert.equal(rows.filter((r) => opens(s.oldKey, r)).length, 8, "the other secrets are untouched");
      } finally {
        await s.store.close();
      }
    });

    test("with BETA9_SECRETS_KEY the new key must be given, and no key file is touched", async () => {
      const s = await setup(backend);
      try {
        const env = s.oldKey.toString("hex");
        await assert.rejects(rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets, envKey: env }), /--new-key-file/);
        const next = randomBytes(32);
        const file = join(s.dir, "operator.key");
        writeFileSync(file, next.toString("base64"));
        const before = readFileSync(join(s.dir, "secrets.key"), "utf8");
        assert.deepEqual(await rotateSecretsKey({ dataDir: s.dir, secrets: s.store.secrets, envKey: env, newKeyFile: file }), { rotated: 8, resumed: 0 });
        assert.equal(readFileSync(join(s.dir, "secrets.key"), "utf8"), before);
        assert.deepEqual(await injected(s, next), expected(s));
      } finally {
        await s.store.close();
      }
    });
  });
}

function beta9(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
    delete env.BETA9_SECRETS_KEY;
    delete env.BETA9_STORE;
    execFile(process.execPath, [cli, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test("beta9 gateway rotate-secrets-key: refused while a gateway holds the data dir, then rotates", async () => {
  const s = await setup("sqlite");
  await s.store.close();
  const unlock = lockDataDir(s.dir); // a gateway running on this data dir
  let held = true;
  try {
    const refused = await beta9(["gateway", "rotate-secrets-key", "--data-dir", s.dir]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /another gateway \(pid \d+\) is using/);
    unlock();
    held = false;
    const done = await beta9(["gateway", "rotate-secrets-key", "--data-dir", s.dir, "--json"]);
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual(JSON.parse(done.stdout), { rotated: 8, resumed: 0, keyFile: join(s.dir, "secrets.key") });
    const store = new SqliteStore(join(s.dir, "gateway.db"));
    try {
      assert.deepEqual(await injected({ ...s, store }, keyIn(join(s.dir, "secrets.key"))), expected(s));
    } finally {
      await store.close();
    }
  } finally {
    if (held) unlock();
  }
});
