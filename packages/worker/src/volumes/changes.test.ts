/**
 * What a container changed in a volume, read from a real overlay (root only): new and changed
 * files, removals by whiteout and by a directory removed and made again, symlinks kept as their
 * text (never followed, wherever they point), directories kept (empty ones too), untouched
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

test("new, changed and re-moded files are changes; whiteouts and replaced directories are removals; links are links", { skip }, async () => {
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
  assert.deepEqual(diff.removed, ["e/z", "deep/er/f", "d/x"], "deepest (last in order) first; a file made a link is replaced, not removed");
  assert.deepEqual(diff.links.map((l) => [l.path, l.target]).sort(), [["link", "/etc/shadow"], ["swap.txt", "/etc/passwd"]], "a link is its text: pointing outside is harmless");
  assert.deepEqual(diff.dirs, [], "directories with entries exist through them");
  assert.deepEqual(diff.skipped, []);
  assert.ok(diff.changed.every((c) => c.source.startsWith(upper)), "bytes are read from the upper directory");
});

test("an untouched volume has no changes", { skip }, async () => {
  const diff = await diffOverlay(upper, merged, base);
  assert.deepEqual(diff, { changed: [], links: [], dirs: [], removed: [], skipped: [] });
});

test("an empty directory is kept, a base link that goes or changes is seen, a base directory entry removed is removed", { skip }, async () => {
  const withSpecials: Record<string, ManifestEntry> = { ...base, "l": ["", 0, 0o777, 1, { link: "a.txt" }], "l2": ["", 0, 0o777, 1, { link: "keep.txt" }], "empty": ["", 0, 0o755, 1, "dir"] };
  symlinkSync("a.txt", join(lower, "l"));
  symlinkSync("keep.txt", join(lower, "l2"));
  mkdirSync(join(lower, "empty"));
  // The lower layer changed under a mounted overlay: mount it again so that the merged view sees it.
  await unmount(merged);
  rmSync(upper, { recursive: true, force: true });
  rmSync(join(dir, "work"), { recursive: true, force: true });
  await mountOverlay([lower], { upper, work: join(dir, "work"), rootfs: merged });
  mkdirSync(join(merged, "fresh", "deeper"), { recursive: true });
  chmodSync(join(merged, "fresh"), 0o700);
  unlinkSync(join(merged, "l"));
  unlinkSync(join(merged, "l2"));
  symlinkSync("../../outside", join(merged, "l2"));
  rmSync(join(merged, "empty"), { recursive: true });
  unlinkSync(join(merged, "d", "x"));
  unlinkSync(join(merged, "d", "y"));
  const diff = await diffOverlay(upper, merged, withSpecials);
  assert.deepEqual(diff.dirs.map((d) => [d.path, d.mode]).sort(), [["d", 0o755], ["fresh/deeper", 0o755]], "empty directories, new or emptied, are kept");
  assert.deepEqual(diff.links.map((l) => [l.path, l.target]), [["l2", "../../outside"]]);
  assert.deepEqual(diff.removed, ["l", "empty", "d/y", "d/x"]);
  assert.deepEqual(diff.changed, []);
});

test("names a volume cannot hold (control characters) are skipped, not committed", { skip }, async () => {
  writeFileSync(join(merged, "bad\nname"), "x");
  const diff = await diffOverlay(upper, merged, base);
  assert.deepEqual(diff.changed, []);
  assert.deepEqual(diff.skipped, ["bad\nname"]);
});
