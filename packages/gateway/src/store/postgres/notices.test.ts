import assert from "node:assert/strict";
import { test } from "node:test";
import { noticeIds, payloads } from "./notices.js";

test("notice payloads: every id once, each payload under Postgres's 8,000 bytes; a gateway ignores its own", () => {
  const ids = Array.from({ length: 600 }, (_, i) => `task-${String(i).padStart(30, "0")}`);
  const out = payloads("gw-a", ids);
  assert.ok(out.length > 1, "split");
  assert.ok(out.every((p) => Buffer.byteLength(p) < 8000 && p.startsWith("gw-a ")));
  assert.deepEqual(out.flatMap((p) => noticeIds(p, "gw-b")), ids);
  assert.deepEqual(out.flatMap((p) => noticeIds(p, "gw-a")), []);
  assert.deepEqual(payloads("gw-a", []), []);
});
