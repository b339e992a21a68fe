import { test } from "node:test";
import assert from "node:assert/strict";
import { formatTable, palette, shortTime } from "./output.js";

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
