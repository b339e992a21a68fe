import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { guardSink, LineSplitter, MAX_LINE_CHARS, pipeLines } from "./lines.js";

test("LineSplitter: lines split across chunks, empty lines kept, final partial line flushed", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of ["ab", "c\n\nde", "f\ng", "h"]) splitter.push(Buffer.from(chunk));
  assert.deepEqual(lines, ["abc", "", "def"]);
  splitter.flush();
  assert.deepEqual(lines, ["abc", "", "def", "gh"]);
});

test("LineSplitter: a multi-byte character split between chunks survives", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  const bytes = Buffer.from("héllo ✓\n");
  splitter.push(bytes.subarray(0, 2));
  splitter.push(bytes.subarray(2, 9));
  splitter.push(bytes.subarray(9));
  splitter.flush();
  assert.deepEqual(lines, ["héllo ✓"]);
});

test("LineSplitter: a runaway line is cut at MAX_LINE_CHARS", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  splitter.push(Buffer.from("x".repeat(MAX_LINE_CHARS * 2 + 5)));
  splitter.flush();
  assert.deepEqual(lines.map((line) => line.length), [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]);
});

test("pipeLines resolves after the last line was emitted", async () => {
  const stream = new PassThrough();
  const lines: string[] = [];
  const done = pipeLines(stream, (line) => lines.push(line));
  stream.write("one\ntw");
  stream.end("o");
  await done;
  assert.deepEqual(lines, ["one", "two"]);
});

test("guardSink swallows a throwing sink", () => {
  const sink = guardSink(() => {
    throw new Error("broken sink");
  });
  assert.doesNotThrow(() => sink("stdout", "line"));
});
