import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { clearTempFiles, SHARED_TEMP_MAX_AGE_MS } from "./temp-files.js";

test("temp files: all go from a directory this gateway owns; only stale ones from a shared one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "b9-temp-"));
  try {
    const old = (Date.now() - SHARED_TEMP_MAX_AGE_MS - 60_000) / 1000;
    for (const name of ["fresh", "stale"]) writeFileSync(join(dir, name), "x");
    utimesSync(join(dir, "stale"), old, old);
    await clearTempFiles(dir, true);
    assert.deepEqual(readdirSync(dir), ["fresh"], "another gateway's upload in progress stays");
    await clearTempFiles(dir, false);
    assert.deepEqual(readdirSync(dir), []);
    await clearTempFiles(join(dir, "missing"), false);
    assert.deepEqual(readdirSync(join(dir, "missing")), [], "made when absent");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
