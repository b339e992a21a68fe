/**
 * A container racing the worker's walk of its upper directory: a directory swapped, over and over,
 * for a link to a host directory. Whatever the timing, the diff never names an entry of the host
 * directory (its names are never listed) and never takes a host file's bytes as the container's
 * (no changed file with a host inode): every listing and lookup goes through a descriptor checked
 * to be the directory the walk expects.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Worker } from "node:worker_threads";
import { diffOverlay } from "./changes.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-volume-race-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const SWAPPER = `
const { renameSync } = require("node:fs");
const { workerData } = require("node:worker_threads");
const stop = new Int32Array(workerData.stop);
const { d, real, link } = workerData;
while (Atomics.load(stop, 0) === 0) {
  try {
    renameSync(d, real);   // the real directory steps aside
    renameSync(link, d);   // the link takes its name
    renameSync(d, link);
    renameSync(real, d);
  } catch {}
}
`;

test("a directory swapped for a link to a host directory during the walk: no host name listed, no host file taken", { skip: process.platform !== "linux" ? "linux only (/proc/self/fd)" : undefined }, async () => {
  const upper = join(dir, "upper");
  const merged = join(dir, "merged");
  const host = join(dir, "host");
  mkdirSync(join(upper, "d"), { recursive: true });
  mkdirSync(merged);
  mkdirSync(host);
  // The same file name on both sides: a lookup resolved again through the link gets the host's file.
  writeFileSync(join(upper, "d", "passwd"), "the container's");
  writeFileSync(join(host, "passwd"), "the host's");
  writeFileSync(join(host, "host-only-secret"), "the host's");
  execFileSync("mkfifo", [join(host, "host-fifo")]);
  symlinkSync(host, join(upper, "d-link"));
  const hostInodes = new Set([lstatSync(join(host, "passwd")).ino, lstatSync(join(host, "host-only-secret")).ino]);

  const stop = new SharedArrayBuffer(4);
  const swapper = new Worker(SWAPPER, { eval: true, workerData: { stop, d: join(upper, "d"), real: join(upper, "d-real"), link: join(upper, "d-link") } });
  const leaks: string[] = [];
  try {
    for (let i = 0; i < 1500 && leaks.length === 0; i++) {
      const diff = await diffOverlay(upper, merged, {});
      for (const path of [...diff.changed.map((c) => c.path), ...diff.skipped, ...diff.links.map((l) => l.path), ...diff.dirs.map((x) => x.path)]) {
        if (/host-only-secret|host-fifo/.test(path)) leaks.push(`listed ${path}`);
      }
      for (const c of diff.changed) if (hostInodes.has(c.ino)) leaks.push(`took the host's ${c.path}`);
    }
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    await swapper.terminate();
  }
  assert.deepEqual(leaks, []);
});
