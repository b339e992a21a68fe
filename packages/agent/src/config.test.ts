import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import {
  ConfigError, configPath, gatewayUrl, gatewayUrls, loadConfig, maskToken, parseGatewayAddress, saveConfig, setConfigKey, showConfig, validateConfig,
} from "./config.js";
import { Backoff } from "./backoff.js";

const MAIN = join(dirname(fileURLToPath(import.meta.url)), "main.js");
const homes: string[] = [];
after(() => { for (const h of homes) rmSync(h, { recursive: true, force: true }); });
function home(): string {
  const h = mkdtempSync(join(tmpdir(), "b9agent-test-"));
  homes.push(h);
  return h;
}
const TOKEN = "b9m_0123456789abcdefghij";

function cli(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("config", () => {
  test("init → file with mode 0600 under $B9AGENT_HOME, the seed's fields, round trip through load", () => {
    const h = home();
    const r = cli(["init", "--gateway", "100.72.101.23:1994", "--token", TOKEN, "--pool", "external", "--machine-id", "159ecc90"], { B9AGENT_HOME: h });
    assert.equal(r.code, 0, r.stderr);
    const path = join(h, "config.yaml");
    assert.equal(configPath({ B9AGENT_HOME: h }), path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const doc = parse(readFileSync(path, "utf8")) as Record<string, any>;
    assert.deepEqual(doc.gateway, { host: "100.72.101.23", port: 1994, tls: false });
    assert.equal(doc.machine.id, "159ecc90");
    assert.equal(doc.machine.token, TOKEN);
    assert.equal(doc.pool, "external");
    assert.equal(doc.keepaliveIntervalSeconds, 60);
    const loaded = loadConfig(path, h, "host-a");
    saveConfig(path, loaded);
    assert.deepEqual(loadConfig(path, h, "host-a"), loaded);
    assert.equal(gatewayUrl(loaded), "http://100.72.101.23:1994");
    // A second init refuses to clobber the token without --force.
    assert.equal(cli(["init", "--gateway", "h:1", "--token", TOKEN, "--pool", "p"], { B9AGENT_HOME: h }).code, 2);
  });

  test("config show masks the token; config set validates per key; unknown key exits 2 with the list", () => {
    const h = home();
    assert.equal(cli(["init", "--gateway", "gw.example:1994", "--token", TOKEN, "--pool", "gpu-a"], { B9AGENT_HOME: h }).code, 0);
    const shown = cli(["config", "show"], { B9AGENT_HOME: h });
    assert.equal(shown.code, 0);
    assert.ok(!shown.stdout.includes(TOKEN), "token must not be printed");
    assert.match(shown.stdout, /token: b9m_\*\*\*\*/);
    assert.match(shown.stdout, /pool: gpu-a/);
    assert.equal(cli(["config", "set", "keepaliveIntervalSeconds", "15"], { B9AGENT_HOME: h }).code, 0);
    assert.equal(cli(["config", "set", "gateway.port", "2000"], { B9AGENT_HOME: h }).code, 0);
    assert.equal(cli(["config", "set", "worker.subnet", "10.219.70.9/24"], { B9AGENT_HOME: h }).code, 0);
    assert.equal(cli(["config", "set", "worker.name", "gpu1"], { B9AGENT_HOME: h }).code, 0);
    const before = readFileSync(join(h, "config.yaml"), "utf8");
    assert.match(before, /subnet: 10\.219\.70\.0\/24/, "the subnet is stored normalized");
    for (const [key, value] of [["keepaliveIntervalSeconds", "0"], ["gateway.port", "70000"], ["pool", "Bad Pool"], ["runtime", "docker"], ["metricsPort", "x"],
      ["worker.name", "Has-Dash"], ["worker.name", "waytoolongname"], ["worker.subnet", "10.219.0.0/33"], ["worker.subnet", "nope"]]) {
      const r = cli(["config", "set", key!, value!], { B9AGENT_HOME: h });
      assert.equal(r.code, 2, `${key}=${value}`);
      assert.match(r.stderr, new RegExp(key!.replace(".", "\\.")));
    }
    assert.equal(readFileSync(join(h, "config.yaml"), "utf8"), before, "a rejected set leaves the file as it was");
    const unknown = cli(["config", "set", "k3s.token", "x"], { B9AGENT_HOME: h });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown key k3s\.token; known keys: gateway\.host, gateway\.port/);
    const json = JSON.parse(cli(["config", "show", "--json"], { B9AGENT_HOME: h }).stdout) as { keepaliveIntervalSeconds: number; gateway: { port: number } };
    assert.equal(json.keepaliveIntervalSeconds, 15);
    assert.equal(json.gateway.port, 2000);
  });

  test("validation: missing fields, bad values, unknown keys; the seed's k3s section is tolerated", () => {
    const base = { gateway: { host: "gw", port: 1994 }, machine: { token: TOKEN }, pool: "external" };
    assert.equal(validateConfig(base, "/h", "me").machine.hostname, "me");
    assert.deepEqual(validateConfig(base, "/h", "me").worker, { name: "agent", subnet: "10.219.64.0/24" }, "apart from beta9 up's local worker by default");
    assert.equal(validateConfig({ ...base, k3s: { token: "x" } }, "/h", "me").pool, "external");
    assert.throws(() => validateConfig({ ...base, pool: undefined }, "/h", "me"), /pool must be a non-empty string/);
    assert.throws(() => validateConfig({ ...base, gateway: { host: "gw" } }, "/h", "me"), /gateway\.port/);
    assert.throws(() => validateConfig({ ...base, extra: 1 }, "/h", "me"), /unknown key extra/);
    assert.throws(() => validateConfig({ ...base, stateDir: "relative" }, "/h", "me"), /absolute/);
    assert.throws(() => validateConfig([], "/h", "me"), ConfigError);
    assert.throws(() => parseGatewayAddress("no-port"), /HOST:PORT/);
    assert.deepEqual(parseGatewayAddress("[::1]:1994"), { host: "::1", port: 1994, tls: false });
    assert.deepEqual(parseGatewayAddress("https://gw.example.com:443"), { host: "gw.example.com", port: 443, tls: true });
    const c = validateConfig(base, "/h", "me");
    assert.throws(() => setConfigKey(c, "nope", "1"), /unknown key nope/);
    assert.equal(setConfigKey(c, "gateway.tls", "true").gateway.tls, true);
    assert.equal(c.gateway.tls, false, "setConfigKey does not mutate");
    assert.ok(!showConfig(c).includes(TOKEN));
    assert.equal(maskToken("short"), "****");
  });

  test("gateway.alternates: more gateways tried in turn, same scheme; bad entries refused naming them", () => {
    const base = { gateway: { host: "gw", port: 1994, tls: true }, machine: { token: TOKEN }, pool: "external" };
    const c = validateConfig({ ...base, gateway: { ...base.gateway, alternates: ["gw2:1994", "[fd00::2]:2000"] } }, "/h", "me");
    assert.deepEqual(gatewayUrls(c), ["https://gw:1994", "https://gw2:1994", "https://[fd00::2]:2000"]);
    assert.deepEqual(gatewayUrls(validateConfig(base, "/h", "me")), ["https://gw:1994"]);
    assert.deepEqual(setConfigKey(c, "gateway.alternates", "a:1, b:2").gateway.alternates, ["a:1", "b:2"]);
    assert.deepEqual(gatewayUrls(setConfigKey(c, "gateway.alternates", "")), ["https://gw:1994"], "an empty value clears them");
    assert.throws(() => setConfigKey(c, "gateway.alternates", "gw3"), /entry "gw3" must be HOST:PORT/);
    assert.throws(() => validateConfig({ ...base, gateway: { ...base.gateway, alternates: ["gw2:99999"] } }, "/h", "me"), /port must be an integer from 1 to 65535/);
    assert.throws(() => validateConfig({ ...base, gateway: { ...base.gateway, alternates: "x y:1" } }, "/h", "me"), /not valid/);
  });

  test("a broken file is a clear error", () => {
    const h = home();
    const path = join(h, "config.yaml");
    writeFileSync(path, "gateway: [unclosed\n");
    assert.throws(() => loadConfig(path, h, "me"), /not valid YAML/);
    assert.throws(() => loadConfig(join(h, "missing.yaml"), h, "me"), /b9agent init/);
    const r = cli(["config", "show"], { B9AGENT_HOME: h });
    assert.equal(r.code, 2);
  });

  test("backoff grows exponentially to its cap, with jitter in [0.5, 1) of the step", () => {
    const low = new Backoff({ minMs: 100, maxMs: 1000, random: () => 0 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => low.next()), [50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ minMs: 100, maxMs: 1000, random: () => 0.999 });
    assert.deepEqual([1, 2, 3].map(() => high.next()), [100, 200, 400]);
    high.reset();
    assert.equal(high.next(), 100);
  });
});
