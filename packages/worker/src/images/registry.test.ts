import assert from "node:assert/strict";
import { readFile, readdir, readlink, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { parseImageRef } from "@beta9/protocol";
import { DigestMismatchError, sha256Digest, sha256File } from "./digest.js";
import { applyLayers } from "./layers.js";
import { isMountPoint } from "./mounts.js";
import { ManifestError, MediaType } from "./oci.js";
import { mountPacked, packRootfs, unmountPacked } from "./pack.js";
import { RegistryClient, RegistryError } from "./registry.js";
import { isLoopbackHost, registryOrigin } from "./registry-http.js";
import { putManifest } from "./registry-push.js";
import { buildTestImage, type TestImage } from "./testing-image.js";
import { startRegistry, tempDir, type TestRegistry } from "./testing.js";

let registry: TestRegistry;
let work: Awaited<ReturnType<typeof tempDir>>;
let client: RegistryClient;
let image: TestImage;
let pushedDigest: string;
const BULK = 24 * 1024 * 1024;

before(async () => {
  work = await tempDir("registry-test");
  registry = await startRegistry();
  client = new RegistryClient({ allowPrivate: true });
  image = await buildTestImage(work.path, "main", BULK);
  pushedDigest = (await client.push(`${registry.host}/team/app:v1`, image)).digest;
});
after(async () => {
  await client?.close();
  await registry?.stop();
  await work?.cleanup();
});

/** Corrupts a stored blob in place (same size), as a bad disk or a tampering mirror would. */
async function corruptStoredBlob(digest: string, edit: (data: Buffer) => Buffer): Promise<void> {
  const hex = digest.slice("sha256:".length);
  const path = join(registry.storageDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
  await writeFile(path, edit(await readFile(path)));
}

describe("registry client against docker-registry", () => {
  it("pulls by tag, verifies every blob, and applies the layers", async (t) => {
    const blobs = join(work.path, "blobs-tag");
    const started = performance.now();
    const pulled = await client.pull(`${registry.host}/team/app:v1`, blobs);
    const pulledMs = performance.now() - started;
    assert.equal(pulled.digest, pushedDigest);
    assert.equal(pulled.layers.length, 3);
    for (const layer of pulled.layers) assert.equal(await sha256File(layer.path), layer.digest);
    assert.deepEqual(pulled.layers.map((l) => l.diffId), image.diffIds);
    assert.deepEqual(pulled.config.config?.Cmd, ["/bin/hello"]);

    const root = join(work.path, "rootfs-tag");
    const stats = await applyLayers(root, pulled.layers);
    const totalMs = performance.now() - started;
    assert.equal(await readFile(join(root, "etc/tag"), "utf8"), "main-v2");
    await assert.rejects(stat(join(root, "etc/old.conf")), { code: "ENOENT" });
    assert.deepEqual(await readdir(join(root, "cache")), ["c"]);
    assert.equal((await stat(join(root, "bin/hello"))).mode & 0o777, 0o755);
    assert.equal((await stat(join(root, "bin/hello"))).nlink, 2);
    const shadow = await stat(join(root, "etc/shadow"));
    assert.equal(shadow.mode & 0o777, 0o640);
    assert.equal(shadow.gid, 42);
    assert.equal(await readlink(join(root, "hello-link")), "bin/hello");
    assert.equal(await readFile(join(root, "app/main.py"), "utf8"), "print('hi')\n");
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    t.diagnostic(`pull ${mb(stats.compressedBytes)} MB in ${pulledMs.toFixed(0)} ms; pull+apply ${mb(stats.uncompressedBytes)} MB uncompressed in ${totalMs.toFixed(0)} ms = ${mb((stats.uncompressedBytes / totalMs) * 1000)} MB/s (${mb((stats.compressedBytes / totalMs) * 1000)} MB/s compressed)`);
  });

  it("packs the pulled rootfs reproducibly, mounts it read-only, and unmounts it", async (t) => {
    const root = join(work.path, "rootfs-tag"); // from the pull test above
    const first = await packRootfs(root, join(work.path, "packed", "app.sqfs"));
    const second = await packRootfs(root, join(work.path, "packed", "app-again.sqfs"));
    assert.equal(await sha256File(first.path), await sha256File(second.path));
    const mountPoint = join(work.path, "mnt", "app");
    const started = performance.now();
    await mountPacked(first.path, mountPoint);
    const mountMs = performance.now() - started;
    try {
      assert.ok(await isMountPoint(mountPoint));
      assert.equal(await readFile(join(mountPoint, "etc/tag"), "utf8"), "main-v2");
      assert.equal(await readlink(join(mountPoint, "hello-link")), "bin/hello");
      assert.equal((await stat(join(mountPoint, "etc/shadow"))).mode & 0o777, 0o640);
      assert.deepEqual(await readdir(join(mountPoint, "cache")), ["c"]);
      await assert.rejects(writeFile(join(mountPoint, "new"), "x"), { code: "EROFS" });
    } finally {
      await unmountPacked(mountPoint);
    }
    assert.ok(!(await isMountPoint(mountPoint)));
    await assert.rejects(stat(mountPoint), { code: "ENOENT" });
    t.diagnostic(`pack ${first.ms.toFixed(0)} ms → ${(first.bytes / 1e6).toFixed(1)} MB squashfs; mount ${mountMs.toFixed(0)} ms`);
  });

  it("pulls by digest, and reuses blobs already on disk", async () => {
    const blobs = join(work.path, "blobs-digest");
    const pulled = await client.pull(`${registry.host}/team/app@${pushedDigest}`, blobs);
    assert.equal(pulled.digest, pushedDigest);
    const before = (await stat(pulled.layers[0]!.path)).mtimeMs;
    await client.pull(`${registry.host}/team/app@${pushedDigest}`, blobs);
    assert.equal((await stat(pulled.layers[0]!.path)).mtimeMs, before);
  });

  it("names the ref when a tag or repository does not exist", async () => {
    await assert.rejects(client.resolve(`${registry.host}/team/app:nope`), (err: unknown) => err instanceof RegistryError && err.code === "NOT_FOUND" && err.message.includes(`${registry.host}/team/app:nope`));
    await assert.rejects(client.resolve(`${registry.host}/no/such:v1`), (err: unknown) => err instanceof RegistryError && err.code === "NOT_FOUND" && err.message.includes("no/such:v1"));
  });

  it("resolves a multi-platform index to this machine's platform", async () => {
    const ref = `${registry.host}/team/multi`;
    const arm = await buildTestImage(work.path, "arm");
    const armConfig = Buffer.from(JSON.stringify({ ...JSON.parse(arm.config.toString()), architecture: "arm64" }));
    const armDigest = (await client.push(`${ref}:arm-only`, { ...arm, config: armConfig })).digest;
    const amdDigest = (await client.push(`${ref}:amd-only`, image)).digest;
    const manifestSize = async (d: string): Promise<number> => (await client.fetchManifest({ registry: registry.host, repository: "team/multi" }, d)).bytes.length;
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [
        { mediaType: MediaType.ociManifest, digest: armDigest, size: await manifestSize(armDigest), platform: { os: "linux", architecture: "arm64" } },
        { mediaType: MediaType.ociManifest, digest: amdDigest, size: await manifestSize(amdDigest), platform: { os: "linux", architecture: "amd64" } },
      ],
    }));
    const indexDigest = await putManifest(client.transport, { registry: registry.host, repository: "team/multi" }, "latest", index, MediaType.ociIndex);
    const amdClient = new RegistryClient({ platform: { os: "linux", architecture: "amd64" }, allowPrivate: true });
    const amd = await amdClient.resolve(ref);
    assert.equal(amd.digest, amdDigest);
    assert.equal(amd.indexDigest, indexDigest);
    const armClient = new RegistryClient({ platform: { os: "linux", architecture: "arm64" }, allowPrivate: true });
    assert.equal((await armClient.resolve(ref)).digest, armDigest);
    const s390 = new RegistryClient({ platform: { os: "linux", architecture: "s390x" }, allowPrivate: true });
    await assert.rejects(s390.resolve(ref), (err: unknown) => err instanceof ManifestError && /linux\/arm64, linux\/amd64/.test(err.message));
    await Promise.all([amdClient.close(), armClient.close(), s390.close()]);
  });

  it("rejects a corrupt layer blob and leaves no partial file", async () => {
    const bad = await buildTestImage(work.path, "corrupt-layer");
    const { manifest } = await client.push(`${registry.host}/team/bad:v1`, bad);
    await corruptStoredBlob(manifest.layers[0]!.digest, (d) => Buffer.from(d.map((b, i) => (i === d.length - 10 ? b ^ 0xff : b))));
    const blobs = join(work.path, "blobs-corrupt");
    await assert.rejects(client.pull(`${registry.host}/team/bad:v1`, blobs), (err: unknown) => err instanceof DigestMismatchError && err.expected === manifest.layers[0]!.digest);
    const left = await readdir(join(blobs, "sha256"));
    assert.ok(!left.includes(manifest.layers[0]!.digest.slice(7)), "the corrupt blob must not be kept");
    assert.ok(!left.some((f) => f.includes("partial")), `no partial files: ${left.join(", ")}`);
  });

  it("rejects a manifest whose bytes do not match its digest, by digest and by tag", async () => {
    const bad = await buildTestImage(work.path, "corrupt-manifest");
    const { digest } = await client.push(`${registry.host}/team/badmanifest:v1`, { ...bad, annotations: { note: "aaaa" } });
    await corruptStoredBlob(digest, (d) => Buffer.from(d.toString().replace('"aaaa"', '"aaab"')));
    await assert.rejects(client.resolve(`${registry.host}/team/badmanifest@${digest}`), DigestMismatchError);
    await assert.rejects(client.resolve(`${registry.host}/team/badmanifest:v1`), DigestMismatchError);
  });

  it("uses plain http only for loopback registries, and refuses redirects to plain http elsewhere", async () => {
    assert.equal(registryOrigin("127.0.0.1:5000"), "http://127.0.0.1:5000");
    assert.equal(registryOrigin("127.8.9.1"), "http://127.8.9.1");
    assert.equal(registryOrigin("localhost:5000"), "http://localhost:5000");
    assert.equal(registryOrigin("[::1]:5000"), "http://[::1]:5000");
    assert.equal(registryOrigin("registry-1.docker.io"), "https://registry-1.docker.io");
    assert.equal(registryOrigin("10.0.0.1:5000"), "https://10.0.0.1:5000");
    assert.ok(!isLoopbackHost("128.0.0.1") && !isLoopbackHost("localhost.example.com"));
    // A loopback server that redirects a blob to http on a non-loopback address: refused before connecting.
    const server = createServer((_req, res) => res.writeHead(307, { location: "http://192.0.2.1/blob" }).end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await assert.rejects(client.fetchBlob(`${host}/x`, { digest: sha256Digest("x"), size: 1 }, join(work.path, "never")), (err: unknown) => err instanceof RegistryError && err.code === "INSECURE");
    } finally {
      server.close();
    }
  });

  it("refuses loopback and private registries unless the operator allows them, by address and by a name that resolves there, before connecting", async () => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const strict = new RegistryClient({ allowPrivate: false });
    const open = new RegistryClient({ allowPrivate: true });
    const refused = (err: unknown) => err instanceof RegistryError && err.code === "PRIVATE_ADDRESS" && /BETA9_ALLOW_PRIVATE_REGISTRIES=1/.test(err.message);
    try {
      await assert.rejects(strict.pull(parseImageRef(`127.0.0.1:${port}/team/app:v1`), join(work.path, "strict-1")), refused);
      await assert.rejects(strict.pull(parseImageRef(`localhost:${port}/team/app:v1`), join(work.path, "strict-2")), refused, "a name that resolves to loopback");
      await assert.rejects(strict.pull(parseImageRef("169.254.169.254/latest/meta:v1"), join(work.path, "strict-3")), refused, "cloud metadata, refused without a packet");
      assert.equal(hits, 0, "nothing reached the server");
      await assert.rejects(open.pull(parseImageRef(`localhost:${port}/team/app:v1`), join(work.path, "open-1")), (err: unknown) => err instanceof RegistryError && err.code === "NOT_FOUND");
      assert.ok(hits > 0, "allowed, it connects");
    } finally {
      await strict.close();
      await open.close();
      server.close();
    }
  });
});

describe("registry behind token auth", () => {
  let secured: TestRegistry;
  before(async () => (secured = await startRegistry({ auth: true })));
  after(async () => secured?.stop());

  it("answers the Bearer challenge for push and pull", async () => {
    const unauth = await request(`http://${secured.host}/v2/team/app/manifests/v1`);
    await unauth.body.dump();
    assert.equal(unauth.statusCode, 401);
    const small = await buildTestImage(work.path, "auth");
    const authClient = new RegistryClient({ allowPrivate: true });
    const pullClient = new RegistryClient({ allowPrivate: true }); // a fresh client holds no token yet
    try {
      const { digest } = await authClient.push(`${secured.host}/team/app:v1`, small);
      const pulled = await pullClient.pull(`${secured.host}/team/app:v1`, join(work.path, "blobs-auth"));
      assert.equal(pulled.digest, digest);
      assert.ok(secured.tokenRequests() >= 2, `token requests: ${secured.tokenRequests()}`);
    } finally {
      await Promise.all([authClient.close(), pullClient.close()]);
    }
  });
});
