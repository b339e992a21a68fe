#!/usr/bin/env node
// Runs every compiled test file (`*.test.js` beside the code in packages/*/dist) with node:test.
// Extra arguments go to node --test, e.g. `npm test -- --test-name-pattern=deployment`.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const packages = join(root, "packages");
const files = [];
for (const pkg of readdirSync(packages)) {
  const dist = join(packages, pkg, "dist");
  let entries = [];
  try {
    entries = readdirSync(dist, { recursive: true }).map(String);
  } catch {
    continue;
  }
  for (const entry of entries) if (entry.endsWith(".test.js")) files.push(relative(root, join(dist, entry)));
}
files.sort();
if (files.length === 0) {
  console.error("no test files found under packages/*/dist; run `npm run build` first");
  process.exit(1);
}
// A hung test must fail the run rather than stall CI; 5 minutes is far above any test's need.
const args = ["--test", "--test-timeout=300000", ...process.argv.slice(2), ...files];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
process.exit(result.status ?? 1);
