/**
 * The sync state's pure rules (what a reload brings in and keeps, how a commit moves the base) and
 * the read guard against a container that redirects a path of its upper directory to a host file.
 */
import assert from "node:assert/strict";
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { ManifestEntry } from "@beta9/protocol";
import { openListed } from "./commit.js";
import { applyCommitted, newSyncState, planReload } from "./sync.js";

const e = (hash: string, mode = 0o644): ManifestEntry => [hash.repeat(64).slice(0, 64), 1, mode, 1];

test("a reload brings in others' changes and removals, keeps the container's own uncommitted ones", () => {
  const state = newSyncState({ same: e("a"), theirs: e("b"), mine: e("c"), gone: e("d"), "mine-gone": e("e") });
  const next = { same: e("a"), theirs: e("f"), mine: e("0"), added: e("1") };
  const local = { changed: [{ path: "mine" }], removed: ["mine-gone"], skipped: [] } as unknown as Parameters<typeof planReload>[3];
  const plan = planReload(state, 7, next, local);
  assert.deepEqual(plan.files.map((f) => f.path).sort(), ["added", "theirs"]);
  assert.deepEqual(plan.remove, ["gone"]);
  assert.deepEqual(plan.kept.sort(), ["mine", "mine-gone"]);
  assert.deepEqual(state.pending, { version: 7, base: next }, "the base moves only when the container confirms");
  assert.equal(state.base.gone?.[0], e("d")[0]);
});

test("a commit moves the base: changed files in, removed files out, a file replacing a directory drops what was below", () => {
  const state = newSyncState({ "d/x": e("a"), keep: e("b"), old: e("c") });
  applyCommitted(state, [{ path: "d", hash: e("9")[0], size: 1, mode: 0o600, mtime: 2 }, { path: "old", delete: true }], new Map());
  assert.deepEqual(Object.keys(state.base).sort(), ["d", "keep"]);
  assert.equal(state.base.d?.[2], 0o600);
  assert.deepEqual(Object.keys(state.lower).sort(), ["d/x", "keep", "old"], "the lower layer is what the overlay shows, unchanged");
});

test("a listed file reached through a directory swapped for a symlink is not read (the host file stays private)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-sync-guard-"));
  try {
    const upper = join(dir, "upper");
    const outside = join(dir, "host-secrets");
    mkdirSync(join(upper, "d"), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(upper, "d", "f"), "tenant data");
    writeFileSync(join(outside, "f"), "host secret");
    const listed = (source: string) => {
      const s = lstatSync(source);
      return { path: "d/f", source: join(upper, "d", "f"), size: s.size, mode: 0o644, mtime: 0, ino: s.ino, dev: s.dev };
    };
    const honest = await openListed(listed(join(upper, "d", "f")));
    assert.ok(honest, "the real file opens");
    await honest.close();
    // The container replaces d with a link to a host directory holding a file of the same name;
    // even with the inode it now resolves to, the open is refused.
    rmSync(join(upper, "d"), { recursive: true });
    symlinkSync(outside, join(upper, "d"));
    assert.equal(await openListed(listed(join(outside, "f"))), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
