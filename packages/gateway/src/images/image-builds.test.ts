/** Build coordination: one build per image id however many ask, uploads checked, outcomes recorded. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import type { GatewayMessage } from "@beta9/protocol";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

let gw: TestGateway;
const sent: GatewayMessage[] = [];
let workerKey: string;

before(async () => {
  gw = await createTestGateway();
  workerKey = (await gw.store.tokens.create(gw.workspaceId, "worker")).key;
  gw.scheduler.connect({
    id: "builder", hostname: "b", pool: "default", runtime: "runc", isolates: true, capacity: { cpuMillicores: 2000, memoryMiB: 2048, gpus: [] },
    connected: true, cordoned: false, lastSeenAt: Date.now(), send: (m) => sent.push(m), close: () => undefined,
  }, []);
});
after(async () => gw.close());

const spec = (command: string) => ({ spec: { base: { kind: "default" }, steps: [{ kind: "shell", command }], env: {} } });
const builds = () => sent.filter((m) => m.type === "image.build");

test("concurrent requests for one spec start one build; a second workspace joins it", async () => {
  const other = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other-builds" } })).json().token.key as string;
  const responses = await Promise.all([
    gw.request("POST", "/api/v1/image/build", { body: spec("echo one") }),
    gw.request("POST", "/api/v1/image/build", { body: spec("echo one") }),
    gw.request("POST", "/api/v1/image/build", { key: other, body: spec("echo one") }),
  ]);
  assert.deepEqual(responses.map((r) => r.statusCode), [202, 202, 202]);
  assert.equal(new Set(responses.map((r) => r.json().id)).size, 1);
  assert.equal(builds().length, 1);
});

test("an upload must match its sha256; then the image is ready and a new request is answered from it", async () => {
  const id = (await gw.request("POST", "/api/v1/image/build", { body: spec("echo two") })).json().id as string;
  const bytes = Buffer.from("pretend squashfs");
  const sha = createHash("sha256").update(bytes).digest("hex");
  const headers = { "content-type": "application/octet-stream" };
  const bad = await gw.request("PUT", `/api/v1/image/${id}/blob`, { key: workerKey, body: bytes, headers: { ...headers, "x-beta9-sha256": "0".repeat(64) } });
  assert.equal(bad.statusCode, 422);
  assert.equal((await gw.request("GET", `/api/v1/image/${id}`)).json().status, "building");
  const user = await gw.request("PUT", `/api/v1/image/${id}/blob`, { body: bytes, headers: { ...headers, "x-beta9-sha256": sha } });
  assert.equal(user.statusCode, 200, "an admin token may upload too");
  const ready = (await gw.request("GET", `/api/v1/image/${id}`)).json();
  assert.deepEqual([ready.status, ready.size, ready.sha256], ["ready", bytes.length, sha]);
  const blob = await gw.request("GET", `/api/v1/image/${id}/blob`, { key: workerKey });
  assert.equal(blob.headers["x-beta9-sha256"], sha);
  assert.ok(blob.rawPayload.equals(bytes));
  const again = await gw.request("POST", "/api/v1/image/build", { body: spec("echo two") });
  assert.deepEqual([again.statusCode, again.json().status], [200, "ready"]);
  const late = await gw.request("PUT", `/api/v1/image/${id}/blob`, { key: workerKey, body: bytes, headers: { ...headers, "x-beta9-sha256": sha } });
  assert.equal(late.statusCode, 409);
});

test("a failed build is recorded with its reason and built again when asked again", async () => {
  const before = builds().length;
  const id = (await gw.request("POST", "/api/v1/image/build", { body: spec("exit 3") })).json().id as string;
  await gw.builds.result(id, false, "step 1/1 (shell: exit 3) failed with exit code 3");
  const failed = (await gw.request("GET", `/api/v1/image/${id}`)).json();
  assert.deepEqual([failed.status, failed.error], ["failed", "step 1/1 (shell: exit 3) failed with exit code 3"]);
  const container = await gw.request("POST", "/api/v1/container", { body: { command: ["true"], imageId: id } });
  assert.equal(container.statusCode, 409);
  assert.equal(container.json().error.code, "IMAGE_NOT_READY");
  assert.equal((await gw.request("POST", "/api/v1/image/build", { body: spec("exit 3") })).statusCode, 202);
  assert.equal(builds().length, before + 2);
});

test("bad specs are 422 with the place named", async () => {
  const res = await gw.request("POST", "/api/v1/image/build", { body: { spec: { base: { kind: "registry", ref: "UPPER/case:x" }, steps: [], env: {} } } });
  assert.equal(res.statusCode, 422);
  assert.equal(res.json().error.code, "IMAGE_SPEC_INVALID");
  const pkg = await gw.request("POST", "/api/v1/image/build", { body: { spec: { base: { kind: "default" }, steps: [{ kind: "apt", packages: ["-o", "x"] }], env: {} } } });
  assert.equal(pkg.statusCode, 422);
  assert.match(pkg.json().error.message, /steps\/0\/packages\/0/);
});

test("a copy step must name files this workspace uploaded; pull credentials must name existing secrets", async () => {
  const bytes = Buffer.from("not really a tar, never unpacked here");
  const hash = createHash("sha256").update(bytes).digest("hex");
  const copy = { spec: { base: { kind: "scratch" }, steps: [{ kind: "copy", object: hash, src: ["."], dest: "/app/" }], env: {} } };
  const before = builds().length;
  const missing = await gw.request("POST", "/api/v1/image/build", { body: copy });
  assert.equal(missing.statusCode, 422);
  assert.match(missing.json().error.message, new RegExp(`object ${hash}\\) were not uploaded to this workspace`));
  const creds = { spec: { base: { kind: "registry", ref: "ghcr.io/acme/app:1", credentials: { secret: "REG_AUTH" } }, steps: [], env: {} } };
  const noSecret = await gw.request("POST", "/api/v1/image/build", { body: creds });
  assert.deepEqual([noSecret.statusCode, noSecret.json().error.code], [404, "SECRET_NOT_FOUND"]);
  assert.match(noSecret.json().error.message, /REG_AUTH/);
  assert.equal(builds().length, before, "nothing was sent to a worker");
});

test("at start, a packed file whose image no workspace has (deleted just before a crash) is removed; others stay", async () => {
  const { ImageBuilds } = await import("./image-builds.js");
  const { existsSync, writeFileSync } = await import("node:fs");
  const kept = (await gw.request("POST", "/api/v1/image/build", { body: spec("echo kept") })).json().id as string;
  const orphan = "f".repeat(32);
  writeFileSync(gw.builds.blobPath(kept), "packed");
  writeFileSync(gw.builds.blobPath(orphan), "packed");
  const restarted = new ImageBuilds({ dir: dirname(gw.builds.blobPath(kept)), images: gw.store.images, scheduler: gw.scheduler });
  await restarted.init();
  assert.equal(existsSync(gw.builds.blobPath(orphan)), false);
  assert.equal(existsSync(gw.builds.blobPath(kept)), true);
});
