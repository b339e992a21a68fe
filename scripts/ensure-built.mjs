#!/usr/bin/env node
// Makes a fresh clone runnable: installs dependencies when node_modules is missing or older
// than the lockfile, then builds incrementally (a no-op when nothing changed).
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
const marker = join(root, "node_modules", ".package-lock.json");
const lock = join(root, "package-lock.json");
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
  process.stderr.write("beta9: installing dependencies (npm ci; the first run compiles better-sqlite3, about a minute)\n");
  run("npm", ["ci", "--no-audit", "--no-fund"]);
}
run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-b"]);
chmodSync(join(root, "packages", "cli", "dist", "main.js"), 0o755);
chmodSync(join(root, "packages", "agent", "dist", "main.js"), 0o755);
