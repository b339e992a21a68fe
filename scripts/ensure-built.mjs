#!/usr/bin/env node
// Makes a fresh clone runnable: installs dependencies when node_modules is missing or older
// than the lockfile, then builds incrementally (a no-op when nothing changed).
//
// better-sqlite3 compiles from source, so npm needs make, g++ and python3: as root on Debian or
// Ubuntu they are installed first (BETA9_NO_INSTALL=1, or `./beta9 up --no-install`, skips that).
// Long steps say they are still going; a failure says what failed and what to do, without a
// stack trace.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const say = (line) => process.stderr.write(`beta9: ${line}\n`);
const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;

/** Runs a step with its output shown, saying every 15 s that it is still going; exits 1 on failure. */
function step(label, cmd, args, hint) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    const timer = setInterval(() => say(`${label}: still going (${Math.round((Date.now() - started) / 1000)} s)`), 15_000);
    const fail = (why) => {
      clearInterval(timer);
      say(`${label} failed (${why}). ${hint}`);
      process.exit(1);
    };
    child.on("error", (err) => fail(err.message));
    child.on("exit", (code, signal) => {
      if (code !== 0) return fail(signal ? `killed by ${signal}` : `exit ${code}`);
      clearInterval(timer);
      resolve();
    });
  });
}

const marker = join(root, "node_modules", ".package-lock.json");
const lock = join(root, "package-lock.json");
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
  const tools = { make: "make", "g++": "g++", python3: "python3" };
  const missing = Object.entries(tools).filter(([, bin]) => !has(bin)).map(([pkg]) => pkg);
  if (missing.length > 0) {
    const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
    if (process.env.BETA9_NO_INSTALL !== "1" && process.getuid?.() === 0 && has("apt-get")) {
      say(`installing build tools for better-sqlite3: ${missing.join(" ")}`);
      await step("apt-get update", "apt-get", ["update", "-qq"], `Run: ${command}`);
      await step("apt-get install", "apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], `Run: ${command}`);
    } else {
      say(`npm needs ${missing.join(", ")} to compile better-sqlite3; install them (${process.getuid?.() === 0 ? "" : "sudo "}${command}) if the next step fails`);
    }
  }
  // node-gyp downloads Node's headers unless told where they are: offline, or with only the npm
  // registry reachable, that fails. Use the system's when they match this node and nothing is set.
  if (!process.env.npm_config_nodedir && spawnSync("npm", ["config", "get", "nodedir"], { encoding: "utf8" }).stdout.trim() in { "": 1, undefined: 1, null: 1 }) {
    const header = "/usr/include/node/node_version.h";
    const text = existsSync(header) ? readFileSync(header, "utf8") : "";
    const version = ["MAJOR", "MINOR", "PATCH"].map((part) => new RegExp(`#define NODE_${part}_VERSION (\\d+)`).exec(text)?.[1]).join(".");
    if (version === process.versions.node) process.env.npm_config_nodedir = "/usr";
  }
  say("installing dependencies (npm ci; the first run compiles better-sqlite3, about a minute)");
  await step("npm ci", "npm", ["ci", "--no-audit", "--no-fund"], "Check that the npm registry is reachable and make, g++ and python3 are installed, then run the command again.");
}
await step("build (tsc -b)", process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-b"],
  "The TypeScript build failed: the errors are above. Run `npm run build` after fixing them.");
// The web dashboard the gateway serves at / (packages/dashboard: Preact, bundled by esbuild; a no-op when up to date).
await step("build (dashboard)", process.execPath, [join(root, "packages", "dashboard", "build.mjs")],
  "The dashboard bundle failed: the errors are above. Run `npm run build` after fixing them.");
chmodSync(join(root, "packages", "cli", "dist", "main.js"), 0o755);
chmodSync(join(root, "packages", "agent", "dist", "main.js"), 0o755);
