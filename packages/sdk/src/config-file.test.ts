/** The SDK's default client from the CLI's saved context (~/.beta9/config.json), the environment winning over it. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigFileError, configDir, defaultClientOptions, readConfig } from "./config-file.js";

function tempHome(t: TestContext): string {
  const home = mkdtempSync(join(tmpdir(), "beta9-home-"));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  return home;
}

/** What `beta9 up` leaves: the context "default" selected. */
function writeCliConfig(dir: string, config: unknown): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), typeof config === "string" ? config : JSON.stringify(config));
}

const upConfig = (gateway: string, token = "b9_from_file") => ({ current: "default", contexts: { default: { gateway, token }, other: { gateway: "http://other:1" } } });

test("the current context fills what BETA9_GATEWAY and BETA9_TOKEN leave unset; the environment wins", (t) => {
  const dir = join(tempHome(t), ".beta9");
  writeCliConfig(dir, upConfig("http://127.0.0.1:1994"));
  const env = { BETA9_CONFIG_DIR: dir };
  assert.deepEqual(defaultClientOptions(env), { gateway: "http://127.0.0.1:1994", token: "b9_from_file" });
  assert.deepEqual(defaultClientOptions({ ...env, BETA9_TOKEN: "b9_env" }), { gateway: "http://127.0.0.1:1994", token: "b9_env" });
  assert.deepEqual(defaultClientOptions({ ...env, BETA9_GATEWAY: "http://gw:2" }), { gateway: "http://gw:2", token: "b9_from_file" });
  assert.deepEqual(defaultClientOptions({ BETA9_CONFIG_DIR: join(dir, "absent"), BETA9_GATEWAY: "http://gw:2" }), { gateway: "http://gw:2" });
  assert.equal(defaultClientOptions({ BETA9_CONFIG_DIR: join(dir, "absent") }), undefined, "nothing configured");
  writeCliConfig(dir, { contexts: { other: { gateway: "http://other:1" } } });
  assert.equal(defaultClientOptions(env), undefined, "contexts but none selected: no guess");
  // Both set: the file is not even read (CI has none, or a broken one).
  writeCliConfig(dir, "{not json");
  assert.deepEqual(defaultClientOptions({ ...env, BETA9_GATEWAY: "http://gw:2", BETA9_TOKEN: "b9_env" }), { gateway: "http://gw:2", token: "b9_env" });
  assert.throws(() => defaultClientOptions(env), (err: ConfigFileError) => err.code === "CONFIG_INVALID" && err.message.includes(dir) && /fix or delete it/.test(err.message));
  writeCliConfig(dir, { contexts: { a: { token: "x" } } });
  assert.throws(() => readConfig(dir), (err: ConfigFileError) => err.code === "CONFIG_INVALID" && /context a needs a "gateway" string/.test(err.message));
  assert.equal(configDir({ HOME: "/ignored", BETA9_CONFIG_DIR: "/x/y" }), "/x/y");
});

test("a script run right after `beta9 up` (no BETA9_* set) calls the gateway of the CLI's current context with its token", async (t) => {
  const seen: { url: string; auth: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url!, auth: req.headers.authorization });
    req.resume().on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ squared: 9 })));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const home = tempHome(t);
  writeCliConfig(join(home, ".beta9"), upConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  const sdk = fileURLToPath(new URL("./index.js", import.meta.url));
  const script = `import { fn } from ${JSON.stringify(sdk)};
const square = fn({ name: "square" }, async (n) => n * n);
console.log(JSON.stringify(await square.remote(3)));`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BETA9_")));
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ["--input-type=module", "-e", script], { env: { ...env, HOME: home }, timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout));
  });
  assert.deepEqual(JSON.parse(out), { squared: 9 });
  assert.deepEqual(seen, [{ url: "/function/square", auth: "Bearer b9_from_file" }]);
});
