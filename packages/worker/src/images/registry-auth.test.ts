/**
 * Pulls from private registries, against the real `docker-registry`: behind Basic auth (an
 * htpasswd file) and behind token auth whose token service wants Basic credentials (the Docker
 * Hub / GHCR / ECR flow: 401 with a Bearer challenge, then a token from the realm it names).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { RegistryClient, RegistryError, type RegistryCredentialValues } from "./registry.js";
import { buildTestImage, type TestImage } from "./testing-image.js";
import { startRegistry, tempDir, type TestRegistry } from "./testing.js";

let work: Awaited<ReturnType<typeof tempDir>>;
let image: TestImage;
before(async () => {
  work = await tempDir("registry-auth");
  image = await buildTestImage(work.path, "private");
});
after(async () => work?.cleanup());

const USERS = { puller: "correct horse battery" };
const right: RegistryCredentialValues = { username: "puller", password: USERS.puller, label: "secrets REG_USER/REG_PASS" };
const wrong: RegistryCredentialValues = { username: "puller", password: "nope", label: "secrets REG_USER/REG_PASS" };

/** Runs `fn` with a client for `registry`, holding `credentials` (or none), and closes it. */
async function withClient<T>(registry: TestRegistry, credentials: RegistryCredentialValues | undefined, fn: (c: RegistryClient) => Promise<T>): Promise<T> {
  const client = new RegistryClient({ allowPrivate: true, ...(credentials && { auth: { registry: registry.host, credentials } }) });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

const failsWith = (code: string, message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof RegistryError, String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  assert.ok(!err.message.includes(USERS.puller), "a credential value never appears in an error");
  return true;
};

for (const kind of ["basic", "bearer"] as const) {
  describe(`a private registry behind ${kind === "basic" ? "Basic auth (htpasswd)" : "token auth that wants Basic credentials"}`, () => {
    let registry: TestRegistry;
    let ref: string;
    let digest: string;
    before(async () => {
      registry = await startRegistry(kind === "basic" ? { htpasswd: USERS } : { auth: true, users: USERS });
      ref = `${registry.host}/team/private:v1`;
      digest = (await withClient(registry, right, (c) => c.push(ref, image))).digest;
    });
    after(async () => registry?.stop());

    it("pulls with the right credentials", async () => {
      const pulled = await withClient(registry, right, (c) => c.pull(ref, join(work.path, `${kind}-blobs`)));
      assert.equal(pulled.digest, digest);
      assert.equal(pulled.layers.length, 3);
      if (kind === "bearer") assert.ok(registry.authorizedTokenRequests() > 0, "the token service got the credentials");
    });

    it("without credentials fails with AUTH_REQUIRED, naming the registry and the image", async () => {
      await assert.rejects(withClient(registry, undefined, (c) => c.resolve(ref)),
        failsWith("AUTH_REQUIRED", new RegExp(`^${registry.host.replace(/\./g, "\\.")} requires credentials to pull .*team/private:v1`)));
    });

    it("with wrong credentials fails with AUTH_FAILED, naming the registry and the secrets (not their values)", async () => {
      await assert.rejects(withClient(registry, wrong, (c) => c.resolve(ref)),
        failsWith("AUTH_FAILED", new RegExp(`^${registry.host.replace(/\./g, "\\.")} refused the credentials in secrets REG_USER/REG_PASS`)));
    });

    it("credentials for another host are not sent here", async () => {
      const elsewhere = new RegistryClient({ allowPrivate: true, auth: { registry: "registry.example.com", credentials: right } });
      try {
        await assert.rejects(elsewhere.resolve(ref), failsWith("AUTH_REQUIRED", /requires credentials/));
      } finally {
        await elsewhere.close();
      }
    });
  });
}

describe("a registry token stored as the secret", () => {
  let registry: TestRegistry;
  before(async () => (registry = await startRegistry({ auth: true, users: USERS })));
  after(async () => registry?.stop());

  it("is sent as the Bearer token itself; a Basic-only registry refuses it with a clear message", async () => {
    const ref = `${registry.host}/team/tokened:v1`;
    const { digest } = await withClient(registry, right, (c) => c.push(ref, image));
    // What a token helper (ecr get-login-password, gcloud auth print-access-token) would store.
    const realm = new URL(`http://${registry.host}/v2/`);
    const challenge = await request(realm);
    await challenge.body.dump();
    const params = Object.fromEntries([...String(challenge.headers["www-authenticate"]).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const url = new URL(params.realm!);
    url.searchParams.set("service", params.service!);
    url.searchParams.set("scope", "repository:team/tokened:pull");
    const res = await request(url, { headers: { authorization: `Basic ${Buffer.from(`puller:${USERS.puller}`).toString("base64")}` } });
    const { token } = (await res.body.json()) as { token: string };
    const before = registry.tokenRequests();
    const pulled = await withClient(registry, { token, label: "secret REG_TOKEN" }, (c) => c.pull(ref, join(work.path, "token-blobs")));
    assert.equal(pulled.digest, digest);
    assert.equal(registry.tokenRequests(), before, "the stored token was used as it is");

    const basicOnly = await startRegistry({ htpasswd: USERS });
    try {
      await assert.rejects(withClient(basicOnly, { token, label: "secret REG_TOKEN" }, (c) => c.resolve(`${basicOnly.host}/team/x:v1`)),
        failsWith("AUTH_FAILED", /asks for a user name and password \(Basic\), but secret REG_TOKEN holds a token/));
    } finally {
      await basicOnly.stop();
    }
  });
});
