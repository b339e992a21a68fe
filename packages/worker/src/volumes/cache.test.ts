/**
 * A worker's snapshot of a volume with symlinks and empty directories, built from what a gateway
 * answers (a loopback HTTP server standing in for the gateway's two worker routes: the real routes
 * are tested in the gateway and end to end). Links are made as links, with their text, wherever they
 * point (nothing is followed: a link to a host directory gets nothing written through it), empty
 * directories get their mode, and a hostile manifest (an entry below a link or a file, a path with
 * '..', a link text with NUL) builds nothing.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { ManifestEntry } from "@beta9/protocol";
import { VolumeCache } from "./cache.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-volume-cache-"));
const outside = mkdtempSync(join(tmpdir(), "beta9-volume-outside-"));
const content = Buffer.from("hello");
const hash = createHash("sha256").update(content).digest("hex");
let server: Server;
let url: string;
let answer: { id: string; version: number; files: Record<string, ManifestEntry> };

before(async () => {
  server = createServer((req, res) => {
    if (req.url?.endsWith(`/blob/${hash}`)) return res.end(content);
    if (req.url?.includes("/mount")) return res.setHeader("content-type", "application/json").end(JSON.stringify({ name: "v", ...answer }));
    res.statusCode = 404;
    res.end("{}");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

let n = 0;
function cache(): VolumeCache {
  return new VolumeCache(join(dir, `c${n++}`), { url, token: "t" });
}

test("links are made as links with their text (outside targets too), empty directories with their mode", async () => {
  answer = {
    id: "vol1", version: 1, files: {
      "a/file.txt": [hash, 5, 0o640, 1_000],
      "a/rel": ["", 0, 0o777, 2_000, { link: "file.txt" }],
      "host": ["", 0, 0o777, 2_000, { link: outside }],
      "shadow": ["", 0, 0o777, 2_000, { link: "/etc/shadow" }],
      "empty/inner": ["", 0, 0o700, 3_000, "dir"],
    },
  };
  const c = cache();
  await c.init();
  const snap = await c.acquire("ws", "v");
  assert.equal(readFileSync(join(snap.dir, "a/file.txt"), "utf8"), "hello");
  assert.equal(readlinkSync(join(snap.dir, "a/rel")), "file.txt");
  assert.equal(readlinkSync(join(snap.dir, "host")), outside);
  assert.equal(readlinkSync(join(snap.dir, "shadow")), "/etc/shadow");
  assert.ok(lstatSync(join(snap.dir, "host")).isSymbolicLink());
  const inner = lstatSync(join(snap.dir, "empty/inner"));
  assert.ok(inner.isDirectory());
  assert.equal(inner.mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(outside), [], "nothing was written through a link");
  await c.release(snap);
});

for (const [what, files] of [
  ["a file below a link (it would be written through it)", { host: ["", 0, 0o777, 1, { link: outside }], "host/x": [hash, 5, 0o644, 1] }],
  ["a link below a link", { host: ["", 0, 0o777, 1, { link: outside }], "host/l": ["", 0, 0o777, 1, { link: "/etc" }] }],
  ["a directory below a file", { f: [hash, 5, 0o644, 1], "f/d": ["", 0, 0o755, 1, "dir"] }],
  ["a path with '..'", { "../escape": [hash, 5, 0o644, 1] }],
  ["a link text with NUL", { l: ["", 0, 0o777, 1, { link: "a\0b" }] }],
] as [string, Record<string, ManifestEntry>][]) {
  test(`a hostile manifest builds nothing: ${what}`, async () => {
    answer = { id: `bad${n}`, version: 1, files };
    const c = cache();
    await c.init();
    await assert.rejects(c.acquire("ws", "v"));
    assert.deepEqual(readdirSync(outside), [], "nothing was written through a link");
    const volumeDir = join(c.dir, "ws", "v");
    assert.deepEqual(existsSync(volumeDir) ? readdirSync(volumeDir) : [], [], "no snapshot, no half-built directory left");
  });
}

test("snapshots survive a worker restart in the same boot of the host, and are all dropped after the host restarts (their files are not fsynced)", async () => {
  answer = { id: "boots", version: 1, files: { "f.txt": [hash, 5, 0o644, 1_000] } };
  const at = join(dir, "boots");
  const withBoot = (boot: string) => new VolumeCache(at, { url, token: "t" }, () => undefined, () => boot);
  const first = withBoot("boot-1");
  await first.init();
  const snap = await first.acquire("ws", "v");
  await first.release(snap);
  assert.equal(readFileSync(join(at, ".boot-id"), "utf8"), "boot-1");

  const restarted = withBoot("boot-1");
  await restarted.init();
  assert.ok(existsSync(snap.dir), "a worker restarted in the same boot keeps its snapshots");
  assert.equal((await restarted.local("ws", "v", "boots", 1))?.files["f.txt"]?.[0], hash);

  const rebooted = withBoot("boot-2");
  await rebooted.init();
  assert.equal(existsSync(snap.dir), false, "after a host restart the snapshot is gone");
  assert.equal(existsSync(`${snap.dir}.json`), false);
  assert.equal(readFileSync(join(at, ".boot-id"), "utf8"), "boot-2");
  const again = await rebooted.acquire("ws", "v");
  assert.equal(readFileSync(join(again.dir, "f.txt"), "utf8"), "hello", "built again from the gateway");
  await rebooted.release(again);
});
