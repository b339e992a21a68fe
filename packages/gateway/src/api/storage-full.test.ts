/**
 * A full data disk, for real: the gateway's data dir on a tmpfs of a few MiB that the test fills.
 * Writes answer 507 STORAGE_FULL and change nothing; reads keep working; freeing space heals it.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { createTestGateway } from "../testing/harness.js";

const skip = process.getuid?.() !== 0 ? "mounting a tmpfs needs root" : undefined;

/** Writes until the disk refuses (ENOSPC), in ever smaller pieces, so not a block is left. */
function fill(path: string): void {
  const fd = openSync(path, "w");
  try {
    for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

test("a full data disk answers 507 STORAGE_FULL to writes, changes nothing, keeps serving reads, and heals when space is freed", { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-full-disk-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir]);
  t.after(() => {
    execFileSync("umount", ["--lazy", dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const gw = await createTestGateway({ dir, maxObjectBytes: 8 << 20 });
  t.after(() => gw.close());
  assert.equal((await gw.request("POST", "/api/v1/pool", { body: { name: "before" } })).statusCode, 201);
  fill(join(dir, "filler"));

  const bytes = randomBytes(1 << 20);
  const hash = createHash("sha256").update(bytes).digest("hex");
  const upload = await gw.request("PUT", `/api/v1/object/${hash}`, { body: bytes, headers: { "content-type": "application/octet-stream" } });
  assert.equal(upload.statusCode, 507, upload.body);
  assert.equal(upload.json().error.code, "STORAGE_FULL");
  assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`)).statusCode, 404, "nothing half-written is listed");

  // The store's WAL may still have room for a few pages; the disk's end comes within some writes.
  let refused: { statusCode: number; json(): { error: { code: string } } } | undefined;
  const made: string[] = [];
  for (let i = 0; i < 2000 && !refused; i++) {
    const res = await gw.request("POST", "/api/v1/pool", { body: { name: `pool-${i}`, description: "x".repeat(1000) } });
    if (res.statusCode === 201) made.push(`pool-${i}`);
    else refused = res;
  }
  assert.ok(refused, "some write must hit the full disk");
  assert.equal(refused.statusCode, 507);
  assert.equal(refused.json().error.code, "STORAGE_FULL");

  const listed = await gw.request("GET", "/api/v1/pool");
  assert.equal(listed.statusCode, 200, "reads keep working");
  const names = (listed.json() as { items: { name: string }[] }).items.map((p) => p.name);
  assert.ok(names.includes("before") && made.every((name) => names.includes(name)));
  assert.equal((await gw.request("GET", "/api/v1/health")).statusCode, 200);

  unlinkSync(join(dir, "filler"));
  assert.equal((await gw.request("POST", "/api/v1/pool", { body: { name: "after" } })).statusCode, 201, "writes work again once there is space");
});
