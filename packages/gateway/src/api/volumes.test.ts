/**
 * Volume routes through the app: what tenants do (create, ls, files in and out, rm, delete), what
 * workers do (mount, contents by hash, upload, commit), and the 4xx answers for bad names, paths
 * escaping the volume, unknown volumes, other workspaces and quotas.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

let gw: TestGateway;
let otherKey: string;
let workerKey: string;
let readOnlyKey: string;
const octet = { "content-type": "application/octet-stream" };
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

before(async () => {
  gw = await createTestGateway({ quotas: { volumeBytes: 4096, volumes: 5 } });
  otherKey = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other" } })).json().token.key;
  workerKey = (await gw.store.tokens.create(gw.workspaceId, "worker")).key;
  readOnlyKey = (await gw.store.tokens.create(gw.workspaceId, "restricted")).key;
});
after(() => gw.close());

function expectError(res: { statusCode: number; body: string }, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, res.body);
  const error = JSON.parse(res.body).error as { code: string; message: string };
  assert.equal(error.code, code, res.body);
  if (message) assert.match(error.message, message);
}

const put = (name: string, path: string, data: string | Buffer, query = "") =>
  gw.request("PUT", `/api/v1/volume/${name}/file?path=${encodeURIComponent(path)}${query}`, { body: Buffer.from(data), headers: octet });

describe("tenant routes", () => {
  test("create, list, get; names with '/' or capitals are 422; a taken name is 409", async () => {
    const created = await gw.request("POST", "/api/v1/volume", { body: { name: "data" } });
    assert.equal(created.statusCode, 201, created.body);
    assert.deepEqual({ ...(created.json() as object), id: "", createdAt: "", updatedAt: "" }, { id: "", name: "data", version: 0, files: 0, bytes: 0, createdAt: "", updatedAt: "" });
    expectError(await gw.request("POST", "/api/v1/volume", { body: { name: "data" } }), 409, "NAME_TAKEN", /volume named data/);
    for (const name of ["a/b", "Data", "..", ""]) {
      expectError(await gw.request("POST", "/api/v1/volume", { body: { name } }), 422, "VALIDATION_FAILED", /name/);
    }
    expectError(await gw.request("GET", "/api/v1/volume/a%2Fb"), 422, "VALIDATION_FAILED");
    assert.deepEqual((await gw.request("GET", "/api/v1/volume")).json().items.map((v: { name: string }) => v.name), ["data"]);
    assert.equal((await gw.request("GET", "/api/v1/volume/data")).json().name, "data");
  });

  test("files in and out: bytes, sha256, mode and mtime come back as sent; each upload is a version", async () => {
    const res = await put("data", "models/a.bin", "hello volume", "&mode=600&mtime=1700000000000");
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { path: "models/a.bin", sha256: sha("hello volume"), size: 12, version: 1 });
    const got = await gw.request("GET", "/api/v1/volume/data/file?path=models/a.bin");
    assert.equal(got.statusCode, 200);
    assert.equal(got.body, "hello volume");
    assert.equal(got.headers["x-beta9-sha256"], sha("hello volume"));
    assert.equal(got.headers["x-beta9-mode"], "600");
    assert.equal(got.headers["x-beta9-mtime"], "1700000000000");
    assert.equal((await put("data", "./models//b.txt", "bb")).json().path, "models/b.txt", "paths are stored canonical");
    assert.equal((await put("data", "top.txt", "t")).json().version, 3);
  });

  test("ls: the root, a directory, recursive, a file; a missing path is 404", async () => {
    const root = (await gw.request("GET", "/api/v1/volume/data/ls")).json().items;
    assert.deepEqual(root.map((e: { path: string; type: string; size: number }) => [e.path, e.type, e.size]), [["models", "dir", 14], ["top.txt", "file", 1]]);
    assert.deepEqual((await gw.request("GET", "/api/v1/volume/data/ls?path=models")).json().items.map((e: { path: string }) => e.path), ["models/a.bin", "models/b.txt"]);
    assert.equal((await gw.request("GET", "/api/v1/volume/data/ls?path=.&recursive=true")).json().items.length, 3);
    assert.equal((await gw.request("GET", "/api/v1/volume/data/ls?path=top.txt")).json().items[0].sha256, sha("t"));
    expectError(await gw.request("GET", "/api/v1/volume/data/ls?path=nope"), 404, "VOLUME_PATH_NOT_FOUND", /Volume data has no file or directory nope/);
  });

  test("paths that escape the volume are 422 VOLUME_PATH_INVALID on every route, and nothing is stored", async () => {
    const before = (await gw.request("GET", "/api/v1/volume/data")).json();
    for (const path of ["../x", "/etc/passwd", "a/../../x", "..", "a%00b"]) {
      const q = path === "a%00b" ? path : encodeURIComponent(path);
      expectError(await gw.request("PUT", `/api/v1/volume/data/file?path=${q}`, { body: Buffer.from("x"), headers: octet }), 422, "VOLUME_PATH_INVALID", /relative to the volume's root/);
      expectError(await gw.request("GET", `/api/v1/volume/data/file?path=${q}`), 422, "VOLUME_PATH_INVALID");
      expectError(await gw.request("GET", `/api/v1/volume/data/ls?path=${q}`), 422, "VOLUME_PATH_INVALID");
      expectError(await gw.request("DELETE", `/api/v1/volume/data/file?path=${q}&recursive=true`), 422, "VOLUME_PATH_INVALID");
    }
    assert.deepEqual((await gw.request("GET", "/api/v1/volume/data")).json(), before);
  });

  test("reading a directory as a file is 409; a missing file 404; an upload that is not octets 415", async () => {
    expectError(await gw.request("GET", "/api/v1/volume/data/file?path=models"), 409, "CONFLICT", /is a directory/);
    expectError(await gw.request("GET", "/api/v1/volume/data/file?path=missing.txt"), 404, "VOLUME_PATH_NOT_FOUND");
    expectError(await gw.request("PUT", "/api/v1/volume/data/file?path=x", { body: "text", headers: { "content-type": "text/plain" } }), 415, "UNSUPPORTED_MEDIA_TYPE");
  });

  test("unknown volumes and other workspaces' volumes: 404 VOLUME_NOT_FOUND saying how to create one", async () => {
    for (const key of [gw.adminKey, otherKey]) {
      const name = key === otherKey ? "data" : "nope";
      for (const [method, url] of [["GET", `/api/v1/volume/${name}`], ["DELETE", `/api/v1/volume/${name}`], ["GET", `/api/v1/volume/${name}/ls`],
        ["GET", `/api/v1/volume/${name}/file?path=top.txt`], ["DELETE", `/api/v1/volume/${name}/file?path=top.txt`]] as const) {
        expectError(await gw.request(method, url, { key }), 404, "VOLUME_NOT_FOUND", new RegExp(`beta9 volume create ${name}`));
      }
      expectError(await gw.request("PUT", `/api/v1/volume/${name}/file?path=x`, { key, body: Buffer.from("x"), headers: octet }), 404, "VOLUME_NOT_FOUND");
    }
    assert.deepEqual((await gw.request("GET", "/api/v1/volume", { key: otherKey })).json(), { items: [] });
  });

  test("a restricted token reads but cannot write", async () => {
    assert.equal((await gw.request("GET", "/api/v1/volume/data/file?path=top.txt", { key: readOnlyKey })).body, "t");
    expectError(await put("data", "x", "x").then(() => gw.request("DELETE", "/api/v1/volume/data/file?path=x", { key: readOnlyKey })), 403, "AUTH_FORBIDDEN");
  });

  test("rm: a file; a directory needs recursive (409 without); the root empties the volume", async () => {
    assert.deepEqual((await gw.request("DELETE", "/api/v1/volume/data/file?path=x")).json().removed, 1);
    expectError(await gw.request("DELETE", "/api/v1/volume/data/file?path=models"), 409, "CONFLICT", /recursive=true/);
    assert.equal((await gw.request("DELETE", "/api/v1/volume/data/file?path=models&recursive=true")).json().removed, 2);
    expectError(await gw.request("DELETE", "/api/v1/volume/data/file?path=models"), 404, "VOLUME_PATH_NOT_FOUND");
    assert.equal((await gw.request("DELETE", "/api/v1/volume/data/file?path=.&recursive=true")).json().removed, 1);
    assert.equal((await gw.request("GET", "/api/v1/volume/data")).json().files, 0);
  });

  test("quota: uploads past the workspace's volume bytes are 429 with what to do; removing files makes room", async () => {
    assert.equal((await put("data", "big", Buffer.alloc(3000, 1))).statusCode, 200);
    expectError(await put("data", "big2", Buffer.alloc(2000, 2)), 429, "QUOTA_EXCEEDED", /bytes of volume contents, the most it may have \(4096\); this upload \(2000 bytes\) does not fit: remove files \(beta9 rm VOLUME:PATH\)/);
    assert.equal((await gw.request("DELETE", "/api/v1/volume/data/file?path=big")).statusCode, 200);
    assert.equal((await put("data", "big2", Buffer.alloc(2000, 2))).statusCode, 200);
  });
});

describe("worker routes", () => {
  const W = () => `/api/v1/worker/volume/${gw.workspaceId}`;

  test("mount creates a missing volume; have=ID:VERSION leaves the manifest out", async () => {
    const first = await gw.request("POST", `${W()}/scratch/mount`, { key: workerKey });
    assert.equal(first.statusCode, 200, first.body);
    assert.deepEqual({ ...(first.json() as object), id: "" }, { id: "", name: "scratch", version: 0, files: {} });
    const again = await gw.request("POST", `${W()}/scratch/mount?have=${first.json().id}:0`, { key: workerKey });
    assert.equal(again.json().files, undefined);
    assert.equal(again.json().id, first.json().id);
    assert.deepEqual((await gw.request("POST", `${W()}/scratch/mount?have=other-id:0`, { key: workerKey })).json().files, {}, "another volume's version 0 is not this one");
  });

  test("upload, commit, fetch by hash: what a container's changes become", async () => {
    const volumeId = (await gw.request("POST", `${W()}/scratch/mount`, { key: workerKey })).json().id;
    const up = await gw.request("POST", `${W()}/blob`, { key: workerKey, body: Buffer.from("from a container"), headers: octet });
    assert.deepEqual(up.json(), { hash: sha("from a container"), size: 16 });
    const commit = await gw.request("POST", `${W()}/scratch/commit`, {
      key: workerKey, body: { volumeId, changes: [{ path: "out/result.txt", hash: up.json().hash, size: 16, mode: 0o644, mtime: 42 }] },
    });
    assert.equal(commit.statusCode, 200, commit.body);
    assert.equal(commit.json().version, 1);
    const manifest = (await gw.request("POST", `${W()}/scratch/mount?have=${volumeId}:0`, { key: workerKey })).json();
    assert.deepEqual(manifest.files, { "out/result.txt": [sha("from a container"), 16, 0o644, 42] });
    assert.equal((await gw.request("GET", `${W()}/blob/${sha("from a container")}`, { key: workerKey })).body, "from a container");
    expectError(await gw.request("GET", `${W()}/blob/${"0".repeat(64)}`, { key: workerKey }), 404, "RESOURCE_NOT_FOUND");
    expectError(await gw.request("POST", `${W()}/scratch/commit`, {
      key: workerKey, body: { volumeId, changes: [{ path: "y", hash: "1".repeat(64), size: 1, mode: 0o644, mtime: 1 }] },
    }), 409, "VOLUME_BLOB_MISSING");
    expectError(await gw.request("POST", `${W()}/scratch/commit`, { key: workerKey, body: { volumeId: "stale", changes: [] } }), 409, "CONFLICT");
    expectError(await gw.request("POST", `${W()}/scratch/commit`, { key: workerKey, body: { volumeId, changes: [{ path: "../up", delete: true }] } }), 422, "VOLUME_PATH_INVALID");
  });

  test("a machine's token reaches only its own workspace; unknown workspaces and path-like ids are refused", async () => {
    const other = (await gw.request("POST", "/api/v1/workspace", { body: { name: "machines-ws" } })).json();
    const machineKey = (await gw.store.tokens.create(other.workspace.id, "machine")).key;
    expectError(await gw.request("POST", `${W()}/scratch/mount`, { key: machineKey }), 404, "RESOURCE_NOT_FOUND");
    expectError(await gw.request("GET", `${W()}/blob/${sha("from a container")}`, { key: machineKey }), 404, "RESOURCE_NOT_FOUND");
    assert.equal((await gw.request("POST", `/api/v1/worker/volume/${other.workspace.id}/own/mount`, { key: machineKey })).statusCode, 200);
    expectError(await gw.request("POST", "/api/v1/worker/volume/no-such-workspace/x/mount", { key: workerKey }), 404, "RESOURCE_NOT_FOUND");
    expectError(await gw.request("POST", "/api/v1/worker/volume/..%2F..%2Fetc/x/mount", { key: workerKey }), 422, "VALIDATION_FAILED");
  });
});
