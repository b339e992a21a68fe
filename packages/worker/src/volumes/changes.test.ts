/**
 * What a container changed in a volume, read from a real overlay (root only): new and changed
 * files, removals by whiteout and by a directory removed and made again, links refused, untouched
 * files left alone. Mounts and temp dirs are removed even when a test fails.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import type { ManifestEntry } from "@beta9/protocol";
import { mountOverlay, unmount } from "../runtime/runc/overlay.js";
import { diffOverlay } from "./changes.js";

const skip = process.getuid?.() !== 0 ? "needs root (overlay mounts)" : undefined;
let dir: string;
let lower: string;
let upper: string;
let merged: string;
const base: Record<string, ManifestEntry> = {};

beforeEach(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "beta9-volume-diff-"));
  lower = join(dir, "lower");
  upper = join(dir, "upper");
  merged = join(dir, "merged");
  for (const path of ["a.txt", "keep.txt", "d/x", "d/y", "e/z", "swap.txt", "deep/er/f"]) {
    mkdirSync(join(lower, path, ".."), { recursive: true });
    writeFileSync(join(lower, path), path);
    base[path] = ["0".repeat(64), path.length, 0o644, 1];
  }
  await mountOverlay([lower], { upper, work: join(dir, "work"), rootfs: merged });
});

afterEach(async () => {
  if (skip) return;
  await unmount(merged);
  rmSync(dir, { recursive: true, force: true });
});

test("new, changed and re-moded files are changes; whiteouts and replaced directories are removals; links are refused", { skip }, async () => {
  writeFileSync(join(merged, "a.txt"), "changed");
  mkdirSync(join(merged, "new"));
  writeFileSync(join(merged, "new", "n.txt"), "new file");
  chmodSync(join(merged, "keep.txt"), 0o4755);
  unlinkSync(join(merged, "d", "x"));
  rmSync(join(merged, "e"), { recursive: true });
  mkdirSync(join(merged, "e"));
  writeFileSync(join(merged, "e", "w"), "in a new e");
  unlinkSync(join(merged, "swap.txt"));
  symlinkSync("/etc/passwd", join(merged, "swap.txt"));
  symlinkSync("/etc/shadow", join(merged, "link"));
  rmSync(join(merged, "deep"), { recursive: true });

  const diff = await diffOverlay(upper, merged, base);
  const changed = Object.fromEntries(diff.changed.map((c) => [c.path, [c.size, c.mode]]));
  assert.deepEqual(changed, { "a.txt": [7, 0o644], "new/n.txt": [8, 0o644], "keep.txt": [8, 0o755], "e/w": [10, 0o644] }, "setuid never reaches a volume");
  assert.deepEqual(diff.removed.sort(), ["d/x", "deep/er/f", "e/z", "swap.txt"]);
  assert.deepEqual(diff.skipped.sort(), ["link", "swap.txt"]);
  assert.ok(diff.changed.every((c) => c.source.startsWith(upper)), "bytes are read from the upper directory");
});

test("an untouched volume has no changes", { skip }, async () => {
  const diff = await diffOverlay(upper, merged, base);
  assert.deepEqual(diff, { changed: [], removed: [], skipped: [] });
});

test("names a volume cannot hold (control characters) are skipped, not committed", { skip }, async () => {
  writeFileSync(join(merged, "bad\nname"), "x");
  const diff = await diffOverlay(upper, merged, base);
  assert.deepEqual(diff.changed, []);
  assert.deepEqual(diff.skipped, ["bad\nname"]);
});
