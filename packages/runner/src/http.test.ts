import { it } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { BodyTooLargeError, readBody } from "./http.js";
import { parseHandlerRef, readRunnerEnv } from "./env.js";

it("readBody concatenates chunks and rejects a body over the limit while streaming", async () => {
  assert.equal((await readBody(Readable.from([Buffer.from("ab"), Buffer.from("cd")]), 4)).toString(), "abcd");
  await assert.rejects(readBody(Readable.from([Buffer.from("abc"), Buffer.from("de")]), 4), BodyTooLargeError);
});

it("parses the runner's environment with defaults and clear errors", () => {
  const env = readRunnerEnv({ BETA9_HANDLER: "dist/app.js:predict", BETA9_CODE_DIR: "/app" });
  assert.deepEqual(env.handler, { file: "dist/app.js", exportName: "predict" });
  assert.equal(env.port, 8000);
  assert.equal(env.concurrency, 1);
  assert.equal(env.graceMs, 10_000);
  assert.equal(readRunnerEnv({}).handler, undefined);
  assert.deepEqual(parseHandlerRef("C:/code/app.js:main"), { file: "C:/code/app.js", exportName: "main" });
  assert.throws(() => parseHandlerRef("app.js"), /expected "relative\/file.js:exportName"/);
  assert.throws(() => readRunnerEnv({ BETA9_CONCURRENCY: "0" }), /BETA9_CONCURRENCY="0" is not valid/);
});
