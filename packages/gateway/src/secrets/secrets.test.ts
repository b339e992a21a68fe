import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { startGateway, type RunningGateway } from "../server.js";
import { loadVaultKey, Vault } from "./vault.js";

describe("vault", () => {
  test("a sealed value opens only with its key, workspace and name, and is not the plaintext", () => {
    const vault = new Vault(randomBytes(32));
    const sealed = vault.seal("ws1", "API_KEY", "sk-live-123");
    assert.ok(!sealed.includes("sk-live-123"));
    assert.notEqual(vault.seal("ws1", "API_KEY", "sk-live-123"), sealed, "a fresh IV each time");
    assert.equal(vault.open("ws1", "API_KEY", sealed), "sk-live-123");
    assert.throws(() => vault.open("ws2", "API_KEY", sealed), "copied to another workspace");
    assert.throws(() => vault.open("ws1", "OTHER", sealed), "copied to another name");
    assert.throws(() => new Vault(randomBytes(32)).open("ws1", "API_KEY", sealed), "another key");
    const raw = Buffer.from(sealed.slice(3), "base64");
    const shortTag = `v1:${Buffer.concat([raw.subarray(0, 12 + 4), raw.subarray(28)]).toString("base64")}`;
    assert.throws(() => vault.open("ws1", "API_KEY", shortTag), "a truncated tag is refused, not checked on 4 bytes");
  });

  test("the key file is made once with mode 0600; BETA9_SECRETS_KEY must be 32 bytes", () => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-vault-"));
    try {
      const file = join(dir, "secrets.key");
      const key = loadVaultKey(file, undefined);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.deepEqual(loadVaultKey(file, undefined), key, "the same key on the next start");
      assert.deepEqual(loadVaultKey(file, "ab".repeat(32)), Buffer.alloc(32, 0xab), "the operator's key wins");
      assert.throws(() => loadVaultKey(file, "short"), /32 bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("secret routes on a real gateway", () => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-secrets-"));
  let gw: RunningGateway;
  after(async () => {
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const call = async (method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown, key = gw.bootstrap?.token.key ?? adminKey) => {
    const res = await request(`${gw.url}/api/v1${path}`, {
      method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, text };
  };
  let adminKey = "";

  test("write-only: values go in, never come out; names are checked where they are used", async () => {
    gw = await startGateway({ dataDir: join(dir, "data"), port: 0, logLevel: "silent" });
    adminKey = gw.bootstrap!.token.key;
    const created = await call("POST", "/secret", { name: "API_KEY", value: "sk-very-secret-value" });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body).sort(), ["createdAt", "name", "updatedAt"]);
    assert.equal((await call("POST", "/secret", { name: "API_KEY", value: "x" })).body.error.code, "SECRET_EXISTS");
    assert.equal((await call("POST", "/secret", { name: "bad-name", value: "x" })).status, 422, "validation names the field");
    const listed = await call("GET", "/secret");
    assert.deepEqual(listed.body.items.map((s: { name: string }) => s.name), ["API_KEY"]);
    assert.ok(!listed.text.includes("sk-very-secret-value"));
    assert.equal((await call("PUT", "/secret/API_KEY", { value: "sk-rotated-value" })).status, 200);
    assert.equal((await call("PUT", "/secret/NOPE", { value: "x" })).body.error.code, "SECRET_NOT_FOUND");

    const restricted = (await call("POST", "/token", { type: "restricted" })).body.key as string;
    assert.equal((await call("POST", "/secret", { name: "MINE", value: "x" }, restricted)).status, 403, "a restricted token cannot write");

    const stub = await call("POST", "/stub", { name: "uses-secret", type: "function/deployment", config: { secrets: ["API_KEY", "MISSING_ONE"] } });
    assert.equal(stub.status, 404);
    assert.equal(stub.body.error.code, "SECRET_NOT_FOUND");
    assert.match(stub.body.error.message, /MISSING_ONE.*beta9 secret create MISSING_ONE/);
    assert.equal((await call("POST", "/sandbox", { secrets: ["MISSING_ONE"] })).body.error.code, "SECRET_NOT_FOUND");

    // At rest: sealed, with the key outside the database.
    const data = join(dir, "data");
    assert.equal(statSync(join(data, "secrets.key")).mode & 0o777, 0o600);
    for (const file of readdirSync(data).filter((f) => f.startsWith("gateway.db"))) {
      assert.ok(!readFileSync(join(data, file)).includes("sk-rotated-value"), `${file} holds no plaintext`);
      assert.ok(!readFileSync(join(data, file)).includes("sk-very-secret-value"), `${file} holds no plaintext`);
    }

    // Another key does not open them: the gateway refuses to start rather than serve wrong values.
    await gw.close();
    process.env.BETA9_SECRETS_KEY = "cd".repeat(32);
    try {
      await assert.rejects(startGateway({ dataDir: data, port: 0, logLevel: "silent" }), /does not open with this gateway's key/);
    } finally {
      delete process.env.BETA9_SECRETS_KEY;
    }
    // A restart with the right key opens them again.
    gw = await startGateway({ dataDir: data, port: 0, logLevel: "silent" });
    assert.equal((await call("POST", "/stub", { name: "uses-secret", type: "function/deployment", config: { secrets: ["API_KEY"] } })).status, 201);
    assert.equal((await call("DELETE", "/secret/API_KEY")).status, 204);
    assert.equal((await call("DELETE", "/secret/API_KEY")).body.error.code, "SECRET_NOT_FOUND");
    assert.deepEqual((await call("GET", "/secret")).body.items, []);
  });
});
