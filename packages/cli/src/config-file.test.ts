import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkGatewayUrl,
  configDir,
  DEFAULT_GATEWAY,
  deleteContext,
  maskToken,
  readConfig,
  resolveContext,
  selectContext,
  setContext,
  upContextName,
  writeConfig,
  type ConfigFile,
} from "./config-file.js";
import { CliError, EXIT } from "./errors.js";

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "beta9-config-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const two: ConfigFile = {
  current: "local",
  contexts: {
    local: { gateway: "http://127.0.0.1:1994", token: "b9_local_token_0123456789" },
    prod: { gateway: "https://beta9.example.com", token: "b9_prod_token_abcdefghij" },
  },
};

test("configDir honours BETA9_CONFIG_DIR and defaults to ~/.beta9", () => {
  assert.equal(configDir({ BETA9_CONFIG_DIR: "/x/y" }), "/x/y");
  assert.match(configDir({}), /\.beta9$/);
});

test("a missing file reads as no contexts", (t) => {
  assert.deepEqual(readConfig(join(tempDir(t), "absent")), { contexts: {} });
});

test("write then read round-trips, with mode 0600 in a new 0700 directory and no temp file left", (t) => {
  const dir = join(tempDir(t), "nested", "config");
  writeConfig(dir, two);
  assert.deepEqual(readConfig(dir), two);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, "config.json")).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ["config.json"]);
});

test("a rewrite replaces the file whole (rename), never appending to or truncating it in place", (t) => {
  const dir = tempDir(t);
  writeConfig(dir, two);
  const before = statSync(join(dir, "config.json")).ino;
  writeConfig(dir, selectContext(two, "prod"));
  assert.notEqual(statSync(join(dir, "config.json")).ino, before);
  assert.equal(readConfig(dir).current, "prod");
  assert.deepEqual(readdirSync(dir), ["config.json"]);
});

test("a failed write leaves the old file intact and no temp file behind", (t) => {
  const dir = tempDir(t);
  writeConfig(dir, two);
  const unserializable = { contexts: { a: { gateway: 1n } } } as unknown as ConfigFile;
  assert.throws(() => writeConfig(dir, unserializable), (err: CliError) => err.code === "CONFIG_UNWRITABLE");
  assert.deepEqual(readConfig(dir), two);
  assert.deepEqual(readdirSync(dir), ["config.json"]);
});

test("a failed rename removes its temp file", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "config.json", "occupied"), { recursive: true });
  assert.throws(() => writeConfig(dir, two), (err: CliError) => err.code === "CONFIG_UNWRITABLE");
  assert.deepEqual(readdirSync(dir), ["config.json"]);
});

test("invalid JSON or shape is a CONFIG_INVALID error naming the file", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "config.json"), "{not json");
  assert.throws(() => readConfig(dir), (err: CliError) => err.code === "CONFIG_INVALID" && err.message.includes(dir));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ contexts: { a: { token: "x" } } }));
  assert.throws(() => readConfig(dir), (err: CliError) => err.code === "CONFIG_INVALID" && /gateway/.test(err.message));
});

test("setContext adds, replaces, and selects the first context or when asked", () => {
  let config: ConfigFile = { contexts: {} };
  config = setContext(config, "a", { gateway: "http://a" }, false);
  assert.equal(config.current, "a", "the first context becomes current");
  config = setContext(config, "b", { gateway: "http://b" }, false);
  assert.equal(config.current, "a");
  config = setContext(config, "b", { gateway: "http://b2", token: "t" }, true);
  assert.equal(config.current, "b");
  assert.deepEqual(config.contexts.b, { gateway: "http://b2", token: "t" });
});

test("beta9 up never overwrites a context that points at another gateway", () => {
  const a = "http://127.0.0.1:1994";
  const b = "http://127.0.0.1:1995";
  assert.equal(upContextName({ contexts: {} }, a), "default");
  assert.equal(upContextName({ contexts: { default: { gateway: a, token: "old" } } }, a), "default", "the same gateway: its new token replaces the old");
  assert.equal(upContextName({ contexts: { default: { gateway: a, token: "t" } } }, b), "default-1995");
  assert.equal(upContextName({ contexts: { default: { gateway: a }, "default-1995": { gateway: "http://10.0.0.1:1995" } } }, b), "default-1995-2");
});

test("select and delete of an unknown context are not-found errors", () => {
  for (const fn of [() => selectContext(two, "nope"), () => deleteContext(two, "nope")]) {
    assert.throws(fn, (err: CliError) => err.code === "CONTEXT_NOT_FOUND" && err.exitCode === EXIT.notFound);
  }
});

test("deleting the current context leaves none selected; deleting another keeps the selection", () => {
  assert.equal(deleteContext(two, "local").current, undefined);
  assert.deepEqual(Object.keys(deleteContext(two, "local").contexts), ["prod"]);
  assert.equal(deleteContext(two, "prod").current, "local");
});

test("resolveContext: current, --context, and the local default without any config", () => {
  assert.deepEqual(resolveContext(two, {}), { name: "local", ...two.contexts.local });
  assert.deepEqual(resolveContext(two, {}, "prod"), { name: "prod", ...two.contexts.prod });
  assert.deepEqual(resolveContext({ contexts: {} }, {}), { name: undefined, gateway: DEFAULT_GATEWAY, token: undefined });
  assert.throws(() => resolveContext(two, {}, "nope"), (err: CliError) => err.code === "CONTEXT_NOT_FOUND");
});

test("BETA9_GATEWAY and BETA9_TOKEN override the selected context field by field", () => {
  const env = { BETA9_TOKEN: "b9_from_env" };
  assert.deepEqual(resolveContext(two, env, "prod"), { name: "prod", gateway: two.contexts.prod!.gateway, token: "b9_from_env" });
  const both = resolveContext(two, { BETA9_GATEWAY: "http://10.0.0.1:1994/", BETA9_TOKEN: "b9_env" });
  assert.deepEqual(both, { name: "local", gateway: "http://10.0.0.1:1994", token: "b9_env" });
  assert.throws(() => resolveContext(two, { BETA9_GATEWAY: "ftp://x" }), (err: CliError) => err.exitCode === EXIT.usage);
});

test("a context's TLS certificate is used for its own gateway only; BETA9_TLS_CA names one for any", () => {
  const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const config = { current: "tls", contexts: { tls: { gateway: "https://10.0.0.5:1994", token: "b9_t", tlsCa: pem } } };
  assert.equal(resolveContext(config, {}).tlsCa, pem);
  assert.equal(resolveContext(config, { BETA9_GATEWAY: "https://other:1994" }).tlsCa, undefined, "not sent to another gateway's check");
  assert.equal(resolveContext(config, { BETA9_GATEWAY: "https://other:1994", BETA9_TLS_CA: pem }).tlsCa, pem);
});

test("maskToken shows a recognisable prefix and suffix only", () => {
  const token = "b9_M40WJDyAzngIBXTVCb903Ec1Tyo3NIcF";
  const masked = maskToken(token);
  assert.equal(masked, "b9_M40****NIcF");
  assert.ok(!masked.includes(token.slice(6, -4)));
  assert.equal(maskToken("short"), "****");
  assert.equal(maskToken(undefined), "-");
});

test("checkGatewayUrl accepts http(s) and strips a trailing slash", () => {
  assert.equal(checkGatewayUrl("https://gw.example.com/"), "https://gw.example.com");
  for (const bad of ["gw.example.com", "ftp://x", ""]) {
    assert.throws(() => checkGatewayUrl(bad), (err: CliError) => err.code === "INVALID_ARGUMENT");
  }
});

test("the written file is the documented shape", (t) => {
  const dir = tempDir(t);
  writeConfig(dir, two);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")), two);
});
