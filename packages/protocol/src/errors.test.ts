/** parseErrorBody: the catalogue's shape is read as sent; anything else becomes HTTP_<status> with the text. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Beta9Error, parseErrorBody } from "./errors.js";

test("an error body round-trips: code, message and details as the gateway sent them", () => {
  const sent = new Beta9Error("QUOTA_EXCEEDED", { what: "volume bytes", limit: 1 }, { limit: 1 }).toBody();
  for (const body of [JSON.stringify(sent), new TextEncoder().encode(JSON.stringify(sent))]) {
    assert.deepEqual(parseErrorBody(429, body), { code: "QUOTA_EXCEEDED", message: sent.error.message, details: { limit: 1 }, structured: true });
  }
  // A code this side does not know yet is kept as sent.
  assert.equal(parseErrorBody(400, '{"error":{"code":"NEW_CODE","message":"m"}}').code, "NEW_CODE");
});

test("anything else: HTTP_<status> and the trimmed text, never a throw", () => {
  assert.deepEqual(parseErrorBody(502, "<html>Bad Gateway</html>\n"), { code: "HTTP_502", message: "<html>Bad Gateway</html>", structured: false });
  assert.deepEqual(parseErrorBody(404, ""), { code: "HTTP_404", message: "", structured: false });
  for (const odd of ["null", "[]", '{"error":null}', '{"error":{"code":5}}', '{"error":"x"}', "{", "x".repeat(2000)]) {
    const parsed = parseErrorBody(500, odd);
    assert.equal(parsed.code, "HTTP_500", odd);
    assert.ok(parsed.message.length <= 500);
  }
});
