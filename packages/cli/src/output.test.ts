import { test } from "node:test";
import assert from "node:assert/strict";
import { cliCommand, formatTable, invokeLine, palette, shortTime } from "./output.js";
import { containerExitStatus } from "./commands/container.js";

test("colour only on a TTY with NO_COLOR unset", () => {
  assert.equal(palette({ isTTY: true }, {}).green("ok"), "\x1b[32mok\x1b[39m");
  assert.equal(palette({ isTTY: false }, {}).green("ok"), "ok");
  assert.equal(palette({ isTTY: true }, { NO_COLOR: "1" }).green("ok"), "ok");
  assert.equal(palette({}, {}).bold("ok"), "ok");
});

test("tables align on visible width and have no trailing spaces", () => {
  const text = formatTable(["ID", "NAME", "ACTIVE"], [["a", "\x1b[32mlong-name\x1b[39m", "yes"], ["bbbb", "x", "no"]]);
  const lines = text.replace(/\x1b\[[0-9;]*m/g, "").split("\n");
  assert.deepEqual(lines, ["ID    NAME       ACTIVE", "a     long-name  yes", "bbbb  x          no"]);
});

test("shortTime drops the T, fraction and Z", () => {
  assert.equal(shortTime("2025-01-31T14:05:09.123Z"), "2025-01-31 14:05:09");
  assert.equal(shortTime(null), "-");
});

test("printed invoke lines call the CLI back for the token; a path that needs quoting falls back to beta9", () => {
  assert.equal(cliCommand({ BETA9_CLI: "/opt/beta9-ts/beta9" }), "/opt/beta9-ts/beta9");
  assert.equal(cliCommand({ BETA9_CLI: "/tmp/my dir/beta9" }, "/usr/local/bin/beta9"), "beta9");
  assert.equal(cliCommand({}, "/usr/local/bin/beta9"), "beta9");
  // Installed in a project (npm install beta9): not on PATH; its absolute path works from anywhere.
  assert.equal(cliCommand({}, "/home/me/my-app/node_modules/.bin/beta9"), "/home/me/my-app/node_modules/.bin/beta9");
  assert.equal(cliCommand({}, "/home/me/my app/node_modules/.bin/beta9"), "npx beta9");
  assert.match(invokeLine("http://127.0.0.1:1994/endpoint/x/v1"), /-H "Authorization: Bearer \$\(\S+ config token\)"/);
});

test("container run exits as a shell would: the command's code, 127 not found, 137 out of memory", () => {
  assert.equal(containerExitStatus({ reason: "exited", exitCode: 3 }), 3);
  assert.equal(containerExitStatus({ reason: "exited", exitCode: 0 }), 0);
  assert.equal(containerExitStatus({ reason: "failed", exitCode: null, message: 'exec: "nosuch": executable file not found in $PATH' }), 127);
  assert.equal(containerExitStatus({ reason: "oom", exitCode: null }), 137);
  assert.equal(containerExitStatus({ reason: "worker_lost", exitCode: null }), 1);
});

test("logs on a terminal read as lines: time, level, message, then fields (errors by message)", async () => {
  const { prettyLogLine } = await import("./log-format.js");
  const plain = palette({ isTTY: false }, {});
  const line = prettyLogLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 1, 12, 4, 5), pid: 1, hostname: "h", msg: "scaling up", stub: "hello", err: { message: "boom", stack: "at x" } }), plain);
  assert.match(line, /^\d\d:\d\d:\d\d WARN  scaling up  stub=hello err="boom"$/);
  assert.equal(prettyLogLine("not json", plain), "not json");
});

test("a container's line reaches a terminal without its control characters; piped, unchanged", async () => {
  const { terminalSafe } = await import("./output.js");
  const hostile = "ok\tthen \x1b]0;owned\x07 and \x1b[2J\r\x9b";
  assert.equal(terminalSafe(hostile, true), "ok\tthen \\x1b]0;owned\\x07 and \\x1b[2J\\x0d\\x9b");
  assert.equal(terminalSafe(hostile, false), hostile);
});
