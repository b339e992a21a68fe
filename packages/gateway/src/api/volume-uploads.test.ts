/**
 * The upload routes `beta9 cp` resumes with, and the entries that are not file contents, through
 * the app: chunks checked against their hash, only missing chunks asked for, a file assembled from
 * them as one commit (chunks dropped after), a whole content stored already committed without
 * bytes; symlinks kept as their text (pointing anywhere, never followed), empty directories kept,
 * rmdir semantics; and the 4xx answers (wrong hash, missing chunk, bad link, quota, other workspace).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

let gw: TestGateway;
let otherKey: string;
const octet = { "content-type": "application/octet-stream" };
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const V = "/api/v1/volume/up";

before(async () => {
  gw = await createTestGateway({ quotas: { volumeBytes: 64 * 1024, volumes: 5 } });
  otherKey = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other-up" } })).json().token.key;
  assert.equal((await gw.request("POST", "/api/v1/volume", { body: { name: "up" } })).statusCode, 201);
});
after(() => gw.close());

function expectError(res: { statusCode: number; body: string }, status: number, code: string): void {
  assert.equal(res.statusCode, status, res.body);
  assert.equal(JSON.parse(res.body).error.code, code, res.body);
}

const putChunk = (data: Buffer, hash = sha(data), key?: string) =>
  gw.request("PUT", `${V}/chunk/${hash}`, { body: data, headers: octet, ...(key && { key }) });

test("a file from chunks: only the missing ones are asked for, assembled whole as one commit, chunks dropped after", async () => {
  const parts = [Buffer.alloc(1000, 1), Buffer.alloc(1000, 2), Buffer.alloc(500, 3)];
  const whole = Buffer.concat(parts);
  const chunks = parts.map((p) => sha(p));
  let check = await gw.request("POST", `${V}/upload/check`, { body: { sha256: sha(whole), chunks } });
  assert.deepEqual(check.json(), { stored: false, missing: chunks });
  assert.equal((await putChunk(parts[0]!)).statusCode, 200);
  // The upload broke here; the next run asks again and is told to send the other two only.
  check = await gw.request("POST", `${V}/upload/check`, { body: { sha256: sha(whole), chunks } });
  assert.deepEqual(check.json().missing, chunks.slice(1));
  expectError(await gw.request("POST", `${V}/assemble`, { body: { path: "big.bin", size: whole.length, chunks, mode: 0o640, mtime: 5 } }), 409, "VOLUME_BLOB_MISSING");
  for (const p of parts.slice(1)) assert.equal((await putChunk(p)).statusCode, 200);
  const done = await gw.request("POST", `${V}/assemble`, { body: { path: "big.bin", size: whole.length, sha256: sha(whole), chunks, mode: 0o640, mtime: 5 } });
  assert.equal(done.statusCode, 200, done.body);
  assert.deepEqual(done.json(), { path: "big.bin", sha256: sha(whole), size: whole.length, version: 1 });
  const got = await gw.request("GET", `${V}/file?path=big.bin`);
  assert.ok(Buffer.from(got.rawPayload).equals(whole));
  assert.equal(got.headers["x-beta9-mode"], "640");
  check = await gw.request("POST", `${V}/upload/check`, { body: { sha256: sha(whole), chunks } });
  assert.deepEqual(check.json(), { stored: true, missing: [] }, "the whole content is stored: nothing needs sending");
  check = await gw.request("POST", `${V}/upload/check`, { body: { chunks } });
  assert.deepEqual(check.json().missing, chunks, "chunks are dropped once assembled");
  // Stored already: a commit names the content, no bytes sent.
  const copy = await gw.request("POST", `${V}/changes`, { body: { changes: [{ path: "copy.bin", hash: sha(whole), size: whole.length, mode: 0o644, mtime: 6 }] } });
  assert.equal(copy.statusCode, 200, copy.body);
  assert.equal((await gw.request("GET", `${V}/file?path=copy.bin`)).headers["x-beta9-sha256"], sha(whole));
});

test("bad chunks and assemblies are refused and store nothing", async () => {
  expectError(await putChunk(Buffer.from("abc"), sha("not abc")), 422, "OBJECT_HASH_MISMATCH");
  assert.deepEqual((await gw.request("POST", `${V}/upload/check`, { body: { chunks: [sha("not abc")] } })).json().missing, [sha("not abc")]);
  expectError(await putChunk(Buffer.alloc(70 * 1024, 7)), 429, "QUOTA_EXCEEDED");
  expectError(await gw.request("POST", `${V}/upload/check`, { body: { chunks: [sha("z")], size: 70 * 1024 } }), 429, "QUOTA_EXCEEDED");
  const part = Buffer.from("xyz");
  assert.equal((await putChunk(part)).statusCode, 200);
  expectError(await gw.request("POST", `${V}/assemble`, { body: { path: "x", size: 3, sha256: sha("other"), chunks: [sha(part)], mode: 0o644, mtime: 1 } }), 422, "OBJECT_HASH_MISMATCH");
  expectError(await gw.request("POST", `${V}/assemble`, { body: { path: "../x", size: 3, chunks: [sha(part)], mode: 0o644, mtime: 1 } }), 422, "VOLUME_PATH_INVALID");
  expectError(await gw.request("POST", `${V}/changes`, { body: { changes: [{ path: "nope", hash: sha("never stored"), size: 1, mode: 0o644, mtime: 1 }] } }), 409, "VOLUME_BLOB_MISSING");
  // Another workspace sees neither the volume nor this workspace's chunks.
  expectError(await putChunk(part, sha(part), otherKey), 404, "VOLUME_NOT_FOUND");
  expectError(await gw.request("POST", `${V}/upload/check`, { body: { chunks: [sha(part)] }, key: otherKey }), 404, "VOLUME_NOT_FOUND");
});

test("symlinks are kept as their text, wherever they point; reading one as a file is a 409, never its target", async () => {
  const res = await gw.request("POST", `${V}/changes`, {
    body: { changes: [{ path: "links/shadow", link: "/etc/shadow", mtime: 1 }, { path: "links/up", link: "../../../../../etc", mtime: 2 }, { path: "links/rel", link: "../big.bin", mtime: 3 }] },
  });
  assert.equal(res.statusCode, 200, res.body);
  const ls = (await gw.request("GET", `${V}/ls?path=links`)).json().items;
  assert.deepEqual(ls.map((e: { path: string; type: string; target: string }) => [e.path, e.type, e.target]), [
    ["links/rel", "link", "../big.bin"], ["links/shadow", "link", "/etc/shadow"], ["links/up", "link", "../../../../../etc"],
  ]);
  expectError(await gw.request("GET", `${V}/file?path=links/rel`), 409, "CONFLICT");
  expectError(await gw.request("GET", `${V}/file?path=links/up/passwd`), 404, "VOLUME_PATH_NOT_FOUND");
  expectError(await gw.request("POST", `${V}/changes`, { body: { changes: [{ path: "l", link: "", mtime: 1 }] } }), 422, "VALIDATION_FAILED");
  expectError(await gw.request("POST", `${V}/changes`, { body: { changes: [{ path: "l", link: "x".repeat(5000), mtime: 1 }] } }), 422, "VALIDATION_FAILED");
  const rm = await gw.request("DELETE", `${V}/file?path=links/shadow`);
  assert.equal(rm.statusCode, 200, rm.body);
  assert.equal(rm.json().removed, 1);
});

test("empty directories are kept and listed; rm takes an empty one without -r, a full one needs it", async () => {
  const res = await gw.request("POST", `${V}/changes`, { body: { changes: [{ path: "e/mpty", dir: true, mode: 0o700, mtime: 1 }, { path: "full", dir: true, mode: 0o755, mtime: 1 }] } });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal((await gw.request("PUT", `${V}/file?path=full/f`, { body: Buffer.from("f"), headers: octet })).statusCode, 200);
  assert.deepEqual((await gw.request("GET", `${V}/ls?path=e`)).json().items, [{ path: "e/mpty", type: "dir", size: 0, mode: 0o700, mtime: 1 }]);
  assert.deepEqual((await gw.request("GET", `${V}/ls?path=e/mpty`)).json().items, []);
  expectError(await gw.request("DELETE", `${V}/file?path=full`), 409, "CONFLICT");
  assert.equal((await gw.request("DELETE", `${V}/file?path=e/mpty`)).json().removed, 1);
  expectError(await gw.request("GET", `${V}/ls?path=e/mpty`), 404, "VOLUME_PATH_NOT_FOUND");
  assert.equal((await gw.request("DELETE", `${V}/file?path=full&recursive=true`)).json().removed, 2);
});
