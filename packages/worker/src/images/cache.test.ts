import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ImageCache } from "./cache.js";
import { mountsUnder } from "./mounts.js";
import { packRootfs } from "./pack.js";
import { tempDir } from "./testing.js";

let work: Awaited<ReturnType<typeof tempDir>>;
const packed = new Map<string, { path: string; bytes: number }>();
const ids = { a: "a".repeat(32), b: "b".repeat(32), c: "c".repeat(32), d: "d".repeat(32) };
let caches: ImageCache[] = [];

before(async () => {
  work = await tempDir("cache");
  for (const id of Object.values(ids)) {
    const root = join(work.path, "src", id);
    await mkdir(root, { recursive: true });
    await writeFile(join(root, "id"), id);
    await writeFile(join(root, "payload"), randomBytes(64 * 1024)); // incompressible: sizes stay similar
    const { path, bytes } = await packRootfs(root, join(work.path, "packed", `${id}.sqfs`));
    packed.set(id, { path, bytes });
  }
});
after(async () => {
  for (const cache of caches) await cache.close().catch(() => {});
  await work?.cleanup();
});

function newCache(name: string, maxBytes: number, options: { delayMs?: number; fail?: boolean; dir?: string } = {}): { cache: ImageCache; fetched: string[] } {
  const fetched: string[] = [];
  const cache = new ImageCache({
    dir: options.dir ?? join(work.path, name),
    maxBytes,
    fetch: async (id, dest) => {
      fetched.push(id);
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      if (options.fail) throw new Error("fetch failed on purpose");
      await copyFile(packed.get(id)!.path, dest);
    },
  });
  caches.push(cache);
  return { cache, fetched };
}

const size = (id: string): number => packed.get(id)!.bytes;

describe("ImageCache", () => {
  it("fetches on first use, mounts once, and serves reads from the mount", async () => {
    const { cache, fetched } = newCache("basic", 10 * 1024 * 1024);
    const lease = await cache.acquire(ids.a);
    assert.equal(await readFile(join(lease.lowerDir, "id"), "utf8"), ids.a);
    await lease.release();
    const again = await cache.acquire(ids.a);
    assert.equal(again.lowerDir, lease.lowerDir);
    assert.deepEqual(fetched, [ids.a]);
    assert.equal((await mountsUnder(join(work.path, "basic"))).length, 1);
    await again.release();
    await cache.close();
    assert.deepEqual(await mountsUnder(join(work.path, "basic")), []);
  });

  it("fetches and mounts once for concurrent acquires of one image", async () => {
    const { cache, fetched } = newCache("concurrent", 10 * 1024 * 1024, { delayMs: 100 });
    const leases = await Promise.all([cache.acquire(ids.a), cache.acquire(ids.a), cache.acquire(ids.a)]);
    assert.deepEqual(fetched, [ids.a]);
    assert.equal(new Set(leases.map((l) => l.lowerDir)).size, 1);
    assert.equal((await mountsUnder(join(work.path, "concurrent"))).length, 1);
    for (const l of leases) await l.release();
    await cache.close();
  });

  it("evicts the least recently used unused image when over budget", async () => {
    const { cache, fetched } = newCache("lru", size(ids.a) + size(ids.b) + 1024);
    for (const id of [ids.a, ids.b, ids.a]) await (await cache.acquire(id)).release(); // a is now more recent than b
    const c = await cache.acquire(ids.c);
    assert.deepEqual(cache.cachedIds().sort(), [ids.a, ids.c].sort());
    await assert.rejects(stat(join(work.path, "lru", "images", `${ids.b}.sqfs`)), { code: "ENOENT" });
    assert.ok(!(await mountsUnder(join(work.path, "lru"))).some((m) => m.endsWith(ids.b)));
    await c.release();
    await (await cache.acquire(ids.b)).release(); // b comes back with a new fetch and evicts a (LRU)
    assert.deepEqual(fetched, [ids.a, ids.b, ids.c, ids.b]);
    assert.deepEqual(cache.cachedIds().sort(), [ids.b, ids.c].sort());
    await cache.close();
  });

  it("never evicts an image in use, and evicts it once released", async () => {
    const { cache } = newCache("refs", size(ids.a) + 1024);
    const a = await cache.acquire(ids.a);
    const b = await cache.acquire(ids.b);
    const a2 = await cache.acquire(ids.a);
    assert.deepEqual(cache.cachedIds().sort(), [ids.a, ids.b].sort()); // over budget, but both in use
    await a.release();
    await a.release(); // idempotent: a2 still holds a
    assert.equal(await readFile(join(a2.lowerDir, "id"), "utf8"), ids.a);
    assert.equal(cache.cachedIds().length, 2);
    await a2.release();
    assert.deepEqual(cache.cachedIds(), [ids.b]);
    assert.equal(await readFile(join(b.lowerDir, "id"), "utf8"), ids.b);
    await b.release();
    await cache.close();
  });

  it("reports a failed fetch, keeps nothing of it, and tries again next time", async () => {
    const dir = join(work.path, "failing");
    const failing = newCache("failing", 10 * 1024 * 1024, { fail: true });
    await assert.rejects(failing.cache.acquire(ids.d), /fetch failed on purpose/);
    assert.deepEqual(await readdir(join(dir, "images")), []);
    await assert.rejects(failing.cache.acquire(ids.d), /fetch failed on purpose/);
    assert.equal(failing.fetched.length, 2);
    await assert.rejects(failing.cache.acquire("../../etc"), /invalid image id/);
    await failing.cache.close();
  });

  it("recovers after a crash: unmounts stale mounts, deletes temp files, keeps complete images", async () => {
    const dir = join(work.path, "crash");
    const first = newCache("crash", 10 * 1024 * 1024);
    await first.cache.acquire(ids.a); // never released or closed: the process "dies" here
    await writeFile(join(dir, "images", `${ids.b}.sqfs.tmp-123456`), "half a download");
    assert.equal((await mountsUnder(dir)).length, 1);

    const second = newCache("crash-2", 10 * 1024 * 1024, { dir });
    await second.cache.ready;
    assert.deepEqual(await mountsUnder(dir), []);
    assert.deepEqual(await readdir(join(dir, "images")), [`${ids.a}.sqfs`]);
    assert.deepEqual(second.cache.cachedIds(), [ids.a]);
    const lease = await second.cache.acquire(ids.a);
    assert.equal(await readFile(join(lease.lowerDir, "id"), "utf8"), ids.a);
    assert.deepEqual(second.fetched, []); // adopted, not fetched again
    await lease.release();
    await second.cache.close();
    assert.deepEqual(await mountsUnder(dir), []);
    caches = caches.filter((c) => c !== first.cache); // its mounts are gone already
  });
});
