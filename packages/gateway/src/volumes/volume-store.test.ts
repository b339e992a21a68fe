/**
 * The volume store on a real directory: versions per commit, contents stored once, concurrent
 * writers of one path leaving one whole file, collection of what no volume names, quotas, and
 * start-up cleaning what a crash left.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, test } from "node:test";
import { Beta9Error, type ErrorCode } from "@beta9/protocol";
import { DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import { VolumeStore } from "./volume-store.js";

const WS = "ws-1";
let dir: string;
let quotas: WorkspaceQuotas;
let store: VolumeStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "beta9-volume-store-"));
  quotas = { ...DEFAULT_QUOTAS };
  store = new VolumeStore(dir, () => quotas);
  await store.init();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const blobs = (ws = WS) => (existsSync(join(dir, ws, "blobs")) ? readdirSync(join(dir, ws, "blobs"), { recursive: true }).map(String).filter((p) => p.includes("/")).sort() : []);
const tmpFiles = () => readdirSync(join(dir, "tmp"));

async function rejects(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof Beta9Error, String(err));
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Uploads `data` to `path` as one commit, as the PUT file route does. */
async function write(name: string, path: string, data: string | Buffer, declared: number | undefined = Buffer.byteLength(data)) {
  const staged = await store.blobs.stage(WS, Readable.from([Buffer.from(data)]), declared);
  return store.commit(WS, name, [{ path, hash: staged.hash, size: staged.size, mode: 0o644, mtime: 1 }], { staged: [staged] });
}

test("create, get, list; a second create of the name is NAME_TAKEN; the count is a quota", async () => {
  const { volume } = await store.create(WS, "data");
  assert.equal(volume.version, 0);
  assert.deepEqual(await store.get(WS, "data"), volume);
  assert.equal((await store.create(WS, "data", true)).created, false);
  await rejects(store.create(WS, "data"), "NAME_TAKEN", /A volume named data already exists/);
  quotas.volumes = 2;
  await store.create(WS, "more");
  await rejects(store.create(WS, "third"), "QUOTA_EXCEEDED", /has 2 volumes, the most it may have \(2\); delete some/);
  assert.deepEqual((await store.list(WS)).map((v) => v.name), ["data", "more"]);
  assert.deepEqual(await store.list("another"), []);
  await rejects(store.require(WS, "nope"), "VOLUME_NOT_FOUND", /No volume nope in this workspace; create it with `beta9 volume create nope`/);
});

test("each commit is a new version with its own manifest file; the previous one is removed", async () => {
  await store.create(WS, "v");
  assert.equal((await write("v", "a.txt", "one")).version, 1);
  const second = await write("v", "b.txt", "two");
  assert.deepEqual({ version: second.version, files: second.files, bytes: second.bytes }, { version: 2, files: 2, bytes: 6 });
  assert.deepEqual(readdirSync(join(dir, WS, "volumes", "v")).sort(), ["head.json", "manifest-2.json"]);
  const { manifest } = await store.manifest(WS, "v");
  assert.equal(manifest.get("a.txt")![0], sha("one"));
});

test("a content is stored once however many paths and uploads name it", async () => {
  await store.create(WS, "v");
  await store.create(WS, "w");
  await write("v", "a", "same bytes");
  await write("v", "b", "same bytes");
  await write("w", "c", "same bytes");
  assert.deepEqual(blobs(), [`${sha("same bytes").slice(0, 2)}/${sha("same bytes")}`]);
  assert.equal(await store.blobs.usage(WS), 10);
  assert.deepEqual(tmpFiles(), []);
});

test("concurrent writers of one path: every commit applies in turn, the file is one whole upload, the other content is collected", async () => {
  await store.create(WS, "v");
  const contents = Array.from({ length: 8 }, (_, i) => Buffer.alloc(256 * 1024, 65 + i));
  const done = await Promise.all(contents.map((c) => write("v", "same.bin", c)));
  assert.deepEqual(done.map((v) => v.version).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8]);
  const { manifest } = await store.manifest(WS, "v");
  const [hash, size] = manifest.get("same.bin")!;
  assert.ok(contents.some((c) => sha(c) === hash), "the file is exactly one writer's bytes");
  assert.equal(size, 256 * 1024);
  assert.equal(sha(readFileSync(store.blobs.pathOf(WS, hash))), hash);
  assert.deepEqual(blobs(), [`${hash.slice(0, 2)}/${hash}`], "the losers' contents are gone");
  assert.equal(await store.blobs.usage(WS), 256 * 1024);
});

test("removing files and deleting a volume collect contents no other volume names", async () => {
  await store.create(WS, "v");
  await store.create(WS, "w");
  await write("v", "only-v", "private");
  await write("v", "shared", "shared");
  await write("w", "shared", "shared");
  await store.commit(WS, "v", [{ path: "only-v", delete: true }]);
  assert.equal(blobs().length, 1);
  await store.delete(WS, "v");
  assert.equal(blobs().length, 1, "w still names the shared content");
  await store.delete(WS, "w");
  assert.deepEqual(blobs(), []);
  assert.equal(await store.blobs.usage(WS), 0);
  await rejects(store.get(WS, "v").then((v) => v ?? Promise.reject(new Beta9Error("VOLUME_NOT_FOUND", { name: "v" }))), "VOLUME_NOT_FOUND");
});

test("an uploaded content awaits its commit; a commit naming a content never uploaded is VOLUME_BLOB_MISSING and changes nothing", async () => {
  await store.create(WS, "v");
  const staged = await store.blobs.stage(WS, Readable.from([Buffer.from("pending")]), 7);
  await store.putBlob(staged);
  await store.sweep(WS);
  assert.equal(blobs().length, 1, "a sweep keeps an upload whose commit has not come yet");
  const volume = await store.commit(WS, "v", [{ path: "p", hash: sha("pending"), size: 7, mode: 0o600, mtime: 5 }]);
  assert.equal(volume.version, 1);
  await rejects(store.commit(WS, "v", [{ path: "q", hash: sha("never"), size: 5, mode: 0o644, mtime: 1 }]), "VOLUME_BLOB_MISSING", /1 file contents/);
  assert.equal((await store.require(WS, "v")).version, 1);
});

test("a commit for a volume deleted and created again since is refused (CONFLICT)", async () => {
  const { volume } = await store.create(WS, "v");
  await store.delete(WS, "v");
  await store.create(WS, "v");
  await rejects(store.commit(WS, "v", [{ path: "x", delete: true }], { volumeId: volume.id }), "CONFLICT", /deleted \(and maybe created again\)/);
});

test("quota on volume bytes: a declared length past it, or an undeclared body that runs past it, is 429 and leaves nothing", async () => {
  quotas.volumeBytes = 1000;
  await store.create(WS, "v");
  await write("v", "a", Buffer.alloc(600, 1));
  await rejects(write("v", "b", Buffer.alloc(500, 2)), "QUOTA_EXCEEDED", /bytes of volume contents/);
  await rejects(write("v", "b", Buffer.alloc(500, 2), undefined), "QUOTA_EXCEEDED", /BETA9_QUOTA_VOLUME_BYTES/);
  assert.deepEqual(tmpFiles(), []);
  assert.equal(blobs().length, 1);
  await write("v", "dup", Buffer.alloc(300, 1).subarray(0, 300));
  await store.commit(WS, "v", [{ path: "a", delete: true }]);
  assert.equal((await write("v", "b", Buffer.alloc(500, 2))).files, 2, "removing a file makes room at once");
});

test("a body longer than its Content-Length is refused", async () => {
  await store.create(WS, "v");
  await rejects(write("v", "a", "0123456789", 4), "BAD_REQUEST", /longer than its Content-Length/);
  assert.deepEqual(tmpFiles(), []);
});

test("start-up removes temp files, stray manifests and contents no volume names (a crash mid-commit)", async () => {
  await store.create(WS, "v");
  await write("v", "kept", "kept");
  const stray = store.blobs.pathOf(WS, sha("orphan"));
  mkdirSync(join(stray, ".."), { recursive: true });
  writeFileSync(stray, "orphan");
  writeFileSync(join(dir, WS, "volumes", "v", "manifest-9.json"), "{}");
  writeFileSync(join(dir, WS, "volumes", "v", "head.json.abc.tmp"), "{");
  writeFileSync(join(dir, "tmp", "upload"), "partial");
  const restarted = new VolumeStore(dir, () => quotas);
  await restarted.init();
  assert.deepEqual(tmpFiles(), []);
  assert.deepEqual(readdirSync(join(dir, WS, "volumes", "v")).sort(), ["head.json", "manifest-1.json"]);
  assert.deepEqual(blobs(), [`${sha("kept").slice(0, 2)}/${sha("kept")}`]);
  assert.equal((await restarted.manifest(WS, "v")).manifest.get("kept")![0], sha("kept"));
});
