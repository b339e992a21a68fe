/**
 * `beta9 up --tls` end to end: the gateway serves HTTPS with a certificate it made, its local worker
 * joins over wss and runs the sample app, the CLI (from the saved context) and the Python SDK trust
 * exactly that certificate, a client without it is refused, and a machine pins it by the fingerprint
 * `beta9 machine create` prints (`b9agent init --tls-fingerprint`, pasted as printed).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { request as httpsRequest } from "node:https";
import { MACHINE_REGISTER_PATH, pinnedTlsOptions } from "@beta9/protocol";
import { runcUnavailableReason } from "@beta9/worker";
import { captureHostState, ownedBy } from "@beta9/worker/testing";
import { localWorkerIdentity } from "./commands/up.js";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const agentMain = fileURLToPath(new URL("../../agent/dist/main.js", import.meta.url));
const sdkPython = fileURLToPath(new URL("../../../sdk/python", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-tls-e2e-"));
const hostBefore = captureHostState();
after(() => rmSync(dir, { recursive: true, force: true }));

test("beta9 up --tls: HTTPS with a made certificate; the worker, the CLI, the Python SDK and a pinned machine trust it, nothing else does", { skip, timeout: 300_000 }, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" };
  delete env.BETA9_GATEWAY;
  delete env.BETA9_TOKEN;
  delete env.BETA9_TLS_CA;
  const dataDir = join(dir, "data");
  const up = spawn(process.execPath, [cli, "up", "--tls", "--no-prepare-image", "--port", "0", "--data-dir", dataDir, "--log-level", "error"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  up.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  up.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  try {
    for (let i = 0; i < 2400 && !/ready in \d+ ms/.test(out) && up.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    const url = /gateway: (https:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    assert.ok(url, out);
    const certPath = join(dataDir, "tls", "gateway.crt");
    const fingerprint = new X509Certificate(readFileSync(certPath)).fingerprint256;
    assert.match(out, new RegExp(`TLS certificate ${certPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, SHA-256 ${fingerprint}`));
    assert.match(out, /sample app: hello v1 answered \{"message":"Hello, beta9!"\}/, "the local worker joined over wss and fetched the code over https");
    assert.match(out, new RegExp(`try: curl --cacert ${certPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} -X POST ${url}/endpoint/hello`));

    await assert.rejects(fetch(`${url}/api/v1/health`), (err: Error & { cause?: { code?: string } }) => /SELF_SIGNED|self-signed/i.test(String(err.cause?.code ?? err.cause)), "a client that does not trust the certificate is refused");
    const plain = await fetch(url.replace("https://", "http://") + "/api/v1/health").then(() => "answered", () => "refused");
    assert.equal(plain, "refused", "no plain HTTP on the TLS port");

    const listed = spawnSync(process.execPath, [cli, "deployment", "list", "--json"], { env, encoding: "utf8" });
    assert.equal(listed.status, 0, listed.stderr);
    assert.equal((JSON.parse(listed.stdout) as { name: string }[])[0]?.name, "hello", "the CLI trusts the certificate saved in its context");

    const python = spawnSync("python3", ["-c", "import beta9; print(beta9.Client().invoke('/endpoint/hello', {'name': 'py'}))"], {
      env: { ...env, PYTHONPATH: sdkPython }, encoding: "utf8",
    });
    assert.equal(python.status, 0, python.stderr);
    assert.match(python.stdout, /Hello, py!/);

    // A machine: `beta9 machine create` prints the line to paste, fingerprint included.
    const created = spawnSync(process.execPath, [cli, "machine", "create", "--pool", "tlspool"], { env, encoding: "utf8" });
    assert.equal(created.status, 0, created.stderr);
    const initLine = /b9agent init (.*) && b9agent/.exec(created.stdout)?.[1];
    assert.ok(initLine?.includes(`--tls-fingerprint ${fingerprint}`), created.stdout);
    if (!initLine) return;
    const agentEnv = { ...process.env, B9AGENT_HOME: join(dir, "agent") };
    const args = initLine.split(" ");
    const init = spawnSync(process.execPath, [agentMain, "init", ...args], { env: agentEnv, encoding: "utf8" });
    assert.equal(init.status, 0, init.stderr);
    const shown = spawnSync(process.execPath, [agentMain, "config", "show", "--json"], { env: agentEnv, encoding: "utf8" });
    const config = JSON.parse(shown.stdout) as { gateway: { tls: boolean; tlsCa: string } };
    assert.equal(config.gateway.tls, true);
    assert.equal(new X509Certificate(config.gateway.tlsCa).fingerprint256, fingerprint, "the pinned certificate is the gateway's");

    const wrong = args.map((a) => (a === fingerprint ? fingerprint.replace(/^../, fingerprint.startsWith("00") ? "11" : "00") : a));
    const refused = spawnSync(process.execPath, [agentMain, "init", ...wrong, "--force"], { env: { ...process.env, B9AGENT_HOME: join(dir, "agent2") }, encoding: "utf8" });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /presented a certificate with fingerprint .* refusing it/);

    // The machine token works over TLS with the pinned certificate, under a name that is not in it (NAT, a public name).
    const registered = await pinnedPost(url, MACHINE_REGISTER_PATH, args[args.indexOf("--token") + 1]!, config.gateway.tlsCa, {
      hostname: "tls-machine", os: "linux", arch: "x64", agentVersion: "test", cpuMillicores: 1000, memoryMiB: 1024, gpus: [],
    });
    assert.equal(registered.status, 200, registered.body);
  } finally {
    const exited = new Promise((r) => up.once("exit", r));
    up.kill("SIGINT");
    await exited;
  }
  const names = [localWorkerIdentity(dataDir).name];
  assert.deepEqual(ownedBy(captureHostState(), names, [dir]), ownedBy(hostBefore, names, [dir]));
});

function pinnedPost(base: string, path: string, token: string, ca: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, base), {
      method: "POST", ...pinnedTlsOptions(ca), servername: "gateway.elsewhere.example", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}
