#!/usr/bin/env node
// Runs every compiled test file (`*.test.js` beside the code in packages/*/dist) with node:test,
// then the Python SDK's tests (sdk/python/tests) with Debian's pytest when it is installed.
// Extra arguments go to node --test, e.g. `npm test -- --test-name-pattern=deployment`;
// BETA9_TEST_PYTHON=0 skips the Python tests, BETA9_TEST_NODE=0 the node ones. `--group=security`
// runs only the security group (scripts/security-tests.mjs).
//
// Each suite runs in a process group of its own, with its output passed through this process.
// When it has printed its summary (or exited), the group is killed: a process a failed test left
// behind (a stand-in worker, a server) can neither keep the run open by holding a pipe nor outlive it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { SECURITY_NODE_TESTS, SECURITY_PYTHON_TESTS } from "./security-tests.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const SUITE_LIMIT_MS = 70 * 60_000;
const EXIT_GRACE_MS = 20_000;

function testFiles() {
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
  return files.sort();
}

/**
 * Runs `argv` in its own process group, forwarding its output. `finished(text)` returns the exit
 * status once the output shows the suite is over (undefined until then); the group gets
 * EXIT_GRACE_MS to exit on its own after that, then is killed.
 */
function runSuite(name, argv, finished) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    let verdict;
    let graceTimer;
    const killGroup = () => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const done = (status) => {
      clearTimeout(limit);
      clearTimeout(graceTimer);
      killGroup();
      resolve(status);
    };
    const onData = (stream) => (chunk) => {
      stream.write(chunk);
      tail = (tail + chunk.toString()).slice(-4096);
      if (verdict === undefined) {
        verdict = finished(tail);
        if (verdict !== undefined) {
          graceTimer = setTimeout(() => {
            process.stderr.write(`\n${name}: finished but still running after ${EXIT_GRACE_MS / 1000} s (a process left behind holds it open); killing it\n`);
            done(verdict);
          }, EXIT_GRACE_MS);
        }
      }
    };
    child.stdout.on("data", onData(process.stdout));
    child.stderr.on("data", onData(process.stderr));
    const limit = setTimeout(() => {
      process.stderr.write(`\n${name}: still running after ${SUITE_LIMIT_MS / 60_000} minutes; killing it\n`);
      done(1);
    }, SUITE_LIMIT_MS);
    child.on("exit", (code, signal) => {
      // Output may still be in flight; a grandchild may hold the pipes open forever.
      setTimeout(() => done(code ?? (signal ? 1 : 0)), 500);
    });
    child.on("error", (err) => {
      process.stderr.write(`${name}: ${err.message}\n`);
      done(1);
    });
  });
}

/** node:test's TAP summary ends with `# duration_ms`; fail or cancelled counts decide the status. */
function nodeVerdict(text) {
  if (!/^# duration_ms /m.test(text)) return undefined;
  const count = (label) => Number(new RegExp(`^# ${label} (\\d+)`, "m").exec(text)?.[1] ?? 0);
  return count("fail") + count("cancelled") > 0 ? 1 : 0;
}

function pythonForPytest() {
  // Debian's python3-pytest belongs to /usr/bin/python3, whatever python3 is first on PATH.
  for (const python of ["/usr/bin/python3", "python3"]) {
    if (spawnSync(python, ["-c", "import pytest"], { stdio: "ignore" }).status === 0) return python;
  }
  return undefined;
}

let status = 0;
const group = process.argv.find((a) => a.startsWith("--group="))?.slice("--group=".length);
if (group !== undefined && group !== "security") {
  console.error(`unknown test group ${group}; known: security`);
  process.exit(2);
}
const extra = process.argv.slice(2).filter((a) => !a.startsWith("--group="));
if (process.env.BETA9_TEST_NODE !== "0") {
  const all = testFiles();
  const missing = group ? SECURITY_NODE_TESTS.filter((f) => !all.includes(f)) : [];
  if (missing.length > 0) {
    console.error(`the security group names test files that do not exist: ${missing.join(", ")}`);
    process.exit(1);
  }
  const files = group ? SECURITY_NODE_TESTS : all;
  if (files.length === 0) {
    console.error("no test files found under packages/*/dist; run `npm run build` first");
    process.exit(1);
  }
  // A hung test must fail the run rather than stall CI; 5 minutes is far above any test's need.
  const code = await runSuite("node --test", [process.execPath, "--test", "--test-reporter=tap", "--test-timeout=300000", ...extra, ...files], nodeVerdict);
  status ||= code;
}
if (process.env.BETA9_TEST_PYTHON !== "0" && extra.length === 0 && existsSync(join(root, "sdk/python/tests"))) {
  const python = pythonForPytest();
  if (python === undefined) {
    console.error("python tests: pytest is not installed (Debian: apt install python3-pytest); skipped");
  } else {
    const targets = group ? SECURITY_PYTHON_TESTS : ["sdk/python/tests"];
    const code = await runSuite("pytest", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", ...targets], () => undefined);
    // 5: no tests collected (never expected here).
    status ||= code;
  }
}
process.exit(status);
