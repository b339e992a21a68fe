/**
 * Per-workspace quotas through the routes: past a limit, 429 QUOTA_EXCEEDED with a message that
 * says what to do, nothing stored; another workspace is not affected; room comes back as work ends.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { request as httpRequest } from "node:http";
import { after, before, test } from "node:test";
import { existsSync, writeFileSync } from "node:fs";
import { imageId } from "@beta9/protocol";
import { resolveQuotas } from "../quotas.js";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

let gw: TestGateway;
let otherKey: string;
before(async () => {
  gw = await createTestGateway({ quotas: { containers: 3, sandboxes: 1, builds: 1, objectBytes: 2048, imageBytes: 5000 }, maxObjectBytes: 1 << 20 });
  otherKey = (await gw.request("POST", "/api/v1/workspace", { body: { name: "other" } })).json().token.key;
});
after(() => gw.close());

const quotaError = (res: { statusCode: number; json(): { error: { code: string; message: string } } }, kind: RegExp) => {
  assert.equal(res.statusCode, 429);
  assert.equal(res.json().error.code, "QUOTA_EXCEEDED");
  assert.match(res.json().error.message, kind);
};

test("containers: the workspace's limit counts containers not yet exited; one more is 429 and nothing is submitted", async () => {
  const run = (key?: string) => gw.request("POST", "/api/v1/container", { body: { command: ["sleep", "60"] }, ...(key && { key }) });
  const first = await run();
  assert.equal(first.statusCode, 201, first.body);
  assert.equal((await run()).statusCode, 201);
  const sandbox = await gw.request("POST", "/api/v1/sandbox", { body: {} });
  assert.equal(sandbox.statusCode, 201, "a sandbox is a container too");
  const before = gw.scheduler.containers.active(gw.workspaceId);
  quotaError(await run(), /has 3 containers running or starting, the most it may have \(3\); stop some/);
  quotaError(await gw.request("POST", "/api/v1/sandbox", { body: {} }), /live sandboxes|containers/);
  assert.equal(gw.scheduler.containers.active(gw.workspaceId), before, "nothing was submitted");
  assert.equal((await run(otherKey)).statusCode, 201, "another workspace has its own limit");
  assert.equal((await gw.request("POST", `/api/v1/container/${first.json().id}/stop`)).statusCode, 200);
  assert.equal((await run()).statusCode, 201, "a stopped container frees its place");
});

test("sandboxes: one live sandbox at most here; terminating it makes room", async () => {
  const listed = (await gw.request("GET", "/api/v1/sandbox?active=true")).json().items as { id: string }[];
  assert.equal(listed.length, 1);
  for (const c of gw.scheduler.containers.list({ workspaceId: gw.workspaceId, active: true })) {
    if (c.request.daemon !== "sandbox") gw.scheduler.stop(c.id);
  }
  quotaError(await gw.request("POST", "/api/v1/sandbox", { body: {} }), /has 1 live sandboxes, the most it may have \(1\); terminate some/);
  assert.equal((await gw.request("POST", `/api/v1/sandbox/${listed[0]!.id}/terminate`)).statusCode, 200);
  assert.equal((await gw.request("POST", "/api/v1/sandbox", { body: {} })).statusCode, 201);
});

test("objects: the bytes a workspace stores are bounded; an upload past it is 429 and nothing is stored", async () => {
  const upload = (body: Buffer) => gw.request("PUT", `/api/v1/object/${createHash("sha256").update(body).digest("hex")}`, {
    body, headers: { "content-type": "application/octet-stream" },
  });
  const tar = (name: string, size: number): Buffer => {
    const header = Buffer.alloc(512);
    header.write(name, 0);
    header.write("0000644\0", 100);
    header.write("0000000\0", 108);
    header.write("0000000\0", 116);
    header.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
    header.write("00000000000\0", 136);
    header.write("0", 156);
    header.write("ustar\0", 257);
    header.write("00", 263);
    header.fill(" ", 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    return Buffer.concat([header, Buffer.alloc(Math.ceil(size / 512) * 512, 97), Buffer.alloc(1024)]);
  };
  const small = await upload(tar("a.txt", 10));
  assert.equal(small.statusCode, 201, small.body);
  const big = tar("b.txt", 600);
  const refused = await upload(big);
  quotaError(refused, /bytes of stored objects, the most it may have \(2048\)/);
  const hash = createHash("sha256").update(big).digest("hex");
  assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`)).statusCode, 404);
  // Streamed without a length: cut off where the workspace's room ends, nothing kept.
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = gw.app.server.address() as { port: number };
  const streamed = await new Promise<{ statusCode: number; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method: "PUT", path: `/api/v1/object/${hash}`, headers: {
      authorization: `Bearer ${gw.adminKey}`, "content-type": "application/octet-stream", "transfer-encoding": "chunked",
    } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ statusCode: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.write(big.subarray(0, 1024));
    req.end(big.subarray(1024));
  });
  quotaError({ statusCode: streamed.statusCode, json: () => JSON.parse(streamed.body) }, /bytes of stored objects/);
  assert.deepEqual(readdirSync(join(gw.dir, "objects", "tmp")), [], "no temp file left");
  assert.equal((await gw.request("HEAD", `/api/v1/object/${hash}`)).statusCode, 404);
});

test("builds: past the running-builds limit a new image is 429; one already building or ready is not refused", async () => {
  const build = (command: string) => gw.request("POST", "/api/v1/image/build", { body: { spec: { base: { kind: "scratch" }, steps: [{ kind: "shell", command }], env: {} } } });
  const first = await build("echo one");
  assert.ok([200, 201, 202].includes(first.statusCode), first.body);
  quotaError(await build("echo two"), /image builds running, the most it may have \(1\)/);
  assert.ok([200, 201, 202].includes((await build("echo one")).statusCode), "the same image again starts no build");
});

test("quotas come from defaults, then BETA9_QUOTA_*, then options; a malformed value is refused at start", () => {
  assert.deepEqual(resolveQuotas({}, {}), { containers: 200, sandboxes: 50, builds: 16, objectBytes: 20 * 1024 ** 3, volumes: 100, volumeBytes: 50 * 1024 ** 3,
    imageBytes: 100 * 1024 ** 3, webSockets: 1000, webSocketMessageBytes: 16 * 1024 ** 2,
  });
  assert.equal(resolveQuotas({}, { BETA9_QUOTA_CONTAINERS: "7" }).containers, 7);
  assert.equal(resolveQuotas({ containers: 9 }, { BETA9_QUOTA_CONTAINERS: "7" }).containers, 9);
  assert.throws(() => resolveQuotas({}, { BETA9_QUOTA_SANDBOXES: "lots" }), /BETA9_QUOTA_SANDBOXES=lots: expected a whole number/);
});

test("images: the bytes of the images a workspace uses are bounded; deleting one (not while a deployment uses it) makes room and removes its file", async () => {
  const spec = (n: number) => ({ base: { kind: "scratch" }, steps: [{ kind: "shell", command: `echo image ${n}` }], env: {} });
  const build = (n: number, key?: string) => gw.request("POST", "/api/v1/image/build", { body: { spec: spec(n) }, ...(key && { key }) });
  // The builds test's build ends (no worker: it fails after the harness's 200 ms wait for one).
  for (let i = 0; i < 100 && (await gw.store.images.list(gw.workspaceId, { limit: 100, offset: 0 })).some((im) => im.status === "building"); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  // Image 1 is ready (6,000 bytes, its packed file on disk), as a finished build leaves it.
  const id = imageId(spec(1));
  await gw.store.images.request(gw.workspaceId, id, spec(1));
  await gw.store.images.markReady(id, 6000, "c".repeat(64));
  writeFileSync(gw.builds.blobPath(id), Buffer.alloc(6000));

  quotaError(await build(2), /has 6000 bytes of images, the most it may have \(5000\); delete images this workspace no longer needs \(beta9 image list, beta9 image delete ID\)/);
  assert.equal((await gw.request("GET", `/api/v1/image/${imageId(spec(2))}`)).statusCode, 404, "nothing was recorded");
  assert.equal((await build(1)).statusCode, 200, "an image the workspace already uses is no new bytes");
  assert.equal((await build(1, otherKey)).statusCode, 200, "another workspace has its own limit (and reuses the built image)");

  const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "imaged", type: "endpoint/deployment", config: { imageId: id } } })).json().stub;
  const deployment = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id } })).json();
  const used = await gw.request("DELETE", `/api/v1/image/${id}`);
  assert.equal(used.statusCode, 409);
  assert.match(used.json().error.message, /used by deployment imaged v1; stop it first \(beta9 deployment stop imaged\)/);
  assert.equal((await gw.request("DELETE", `/api/v1/image/${id}`, { key: otherKey })).statusCode, 204, "another workspace's use is its own");
  assert.equal((await gw.request("POST", `/api/v1/deployment/${deployment.id}/stop`)).statusCode, 200);

  assert.equal((await gw.request("DELETE", `/api/v1/image/${id}`)).statusCode, 204);
  assert.equal((await gw.request("GET", `/api/v1/image/${id}`)).statusCode, 404);
  assert.equal(existsSync(gw.builds.blobPath(id)), false, "no workspace uses it: its packed file is gone");
  assert.equal((await gw.request("DELETE", `/api/v1/image/${id}`)).statusCode, 404);
  const restart = await gw.request("POST", `/api/v1/deployment/${deployment.id}/start`);
  assert.equal(restart.statusCode, 409, "a deployment cannot start on an image its workspace deleted");
  assert.match(restart.json().error.message, new RegExp(`imaged's image ${id} was deleted from this workspace`));
  assert.notEqual((await build(2)).statusCode, 429, "room again");
});
