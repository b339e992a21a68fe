/** Task tagging of what handlers print: real streams, real async work interleaved. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { untagLogLine } from "@beta9/protocol";
import { TASK_LOG_TAG_END, TASK_LOG_TAG_PREFIX } from "./constants.js";
import { runAsTask, tagLines, tagTaskOutput } from "./task-log.js";

const tag = (id: string) => TASK_LOG_TAG_PREFIX + id + TASK_LOG_TAG_END;

/** A stream that keeps what was written, tagged once at construction. */
function sink(): { stream: Writable; text: () => string } {
  let text = "";
  const stream = new Writable({ write(chunk: Buffer, _encoding, done) { text += chunk.toString("utf8"); done(); } });
  tagTaskOutput(stream);
  return { stream, text: () => text };
}

test("tagLines tags every line a write starts, and none it continues", () => {
  assert.equal(tagLines("a\nb\n", "t", true), `${tag("t")}a\n${tag("t")}b\n`);
  assert.equal(tagLines("rest\nnext", "t", false), `rest\n${tag("t")}next`);
  assert.equal(tagLines("\n", "t", true), `${tag("t")}\n`);
});

test("writes inside runAsTask carry the task's tag; others pass through untouched", async () => {
  const { stream, text } = sink();
  stream.write("before\n");
  await Promise.all([
    runAsTask("t-1", async () => {
      stream.write("one: start\n");
      await new Promise((r) => setTimeout(r, 1));
      stream.write(Buffer.from("one: after await\n"));
    }),
    runAsTask("t-2", async () => {
      await new Promise((r) => setImmediate(r));
      stream.write("two: ", () => undefined);
      stream.write("same line\n");
    }),
  ]);
  stream.write("after\n");
  const lines = text().trimEnd().split("\n").map(untagLogLine);
  assert.deepEqual(lines, [
    { line: "before" },
    { taskId: "t-1", line: "one: start" },
    { taskId: "t-2", line: "two: same line" },
    { taskId: "t-1", line: "one: after await" },
    { line: "after" },
  ]);
});

test("untagLogLine leaves untagged and malformed lines as they are", () => {
  assert.deepEqual(untagLogLine("plain"), { line: "plain" });
  assert.deepEqual(untagLogLine(`${TASK_LOG_TAG_PREFIX}no end`), { line: `${TASK_LOG_TAG_PREFIX}no end` });
  assert.deepEqual(untagLogLine(`${TASK_LOG_TAG_PREFIX}${"x".repeat(200)}${TASK_LOG_TAG_END}long`).taskId, undefined);
  assert.deepEqual(untagLogLine(`${tag("abc")}`), { taskId: "abc", line: "" });
});
