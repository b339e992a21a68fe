import assert from "node:assert/strict";
import { test } from "node:test";
import {
  checkClientFrame, exitFrame, MAX_SHELL_FRAME, resizeFrame, shellDataFrames, shellFrame, ShellFrameReader, SHELL_EOF, SHELL_EXIT, SHELL_INPUT,
  SHELL_STDOUT,
} from "./shell-protocol.js";

test("frames survive any split of the byte stream", () => {
  const frames = [shellFrame(SHELL_STDOUT, Buffer.from("hello")), exitFrame(3), shellFrame(SHELL_EOF)];
  const bytes = Buffer.concat(frames);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const reader = new ShellFrameReader();
    const got = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
    assert.deepEqual(got.map((f) => [f.type, f.payload.toString("hex")]), [[SHELL_STDOUT, Buffer.from("hello").toString("hex")], [SHELL_EXIT, "00000003"], [SHELL_EOF, ""]]);
  }
});

test("a frame longer than the limit is refused before it is buffered", () => {
  const header = Buffer.alloc(5);
  header[0] = SHELL_STDOUT;
  header.writeUInt32BE(MAX_SHELL_FRAME + 1, 1);
  assert.throws(() => new ShellFrameReader().push(header), /at most/);
});

test("long data goes in frames of at most 64 KiB", () => {
  const frames = shellDataFrames(SHELL_INPUT, Buffer.alloc(MAX_SHELL_FRAME * 2 + 1));
  assert.deepEqual(frames.map((f) => f.readUInt32BE(1)), [MAX_SHELL_FRAME, MAX_SHELL_FRAME, 1]);
});

test("a client may send input, resizes of sane size and EOF, nothing else", () => {
  assert.equal(checkClientFrame(shellFrame(SHELL_INPUT, Buffer.from("ls\r"))), undefined);
  assert.equal(checkClientFrame(resizeFrame(120, 40)), undefined);
  assert.equal(checkClientFrame(shellFrame(SHELL_EOF)), undefined);
  assert.match(checkClientFrame(exitFrame(0)) ?? "", /may not send/);
  assert.match(checkClientFrame(shellFrame(SHELL_STDOUT, Buffer.from("x"))) ?? "", /may not send/);
  const zero = Buffer.from(resizeFrame(1, 1));
  zero.writeUInt16BE(0, 5);
  assert.match(checkClientFrame(zero) ?? "", /outside/);
  assert.match(checkClientFrame(Buffer.concat([shellFrame(SHELL_INPUT, Buffer.from("a")), Buffer.from("b")])) ?? "", /length/);
  assert.match(checkClientFrame(Buffer.from([1, 0])) ?? "", /shorter/);
  assert.equal(resizeFrame(5000, 0).readUInt16BE(5), 1000, "sizes are clamped by senders");
});
