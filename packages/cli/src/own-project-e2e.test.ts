/**
 * A project of one's own, outside the checkout, end to end on real parts: `beta9 init` in a temp
 * dir (packing dist-pack/beta9-<version>.tgz when it is missing or stale, then a real
 * `npm install` from the registry, beta9 from the tarball), the template type-checks against the
 * installed SDK's types, and `npx beta9 deploy` from there reaches a real gateway and runc worker
 * and the endpoint answers. A lone .ts file with no beta9 installed deploys too, with the
 * checkout's CLI and its own SDK. The deploys are skipped (with the reason) where runc cannot
 * run; npm's time is printed as a diagnostic, never asserted.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Client } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState, ownedBy } from "@beta9/worker/testing";

const runcSkip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-own-"));
const app = join(dir, "my-app");
const hostBefore = captureHostState();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command in `cwd`, with no BETA9_* of the parent and a config dir of its own. */
function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("BETA9_")) base[k] = v;
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...base, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1", npm_config_nodedir: "/usr", ...env } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }));
  });
}
// `--no`: the project's own beta9 or nothing; npx never fetches a package of that name.
const npx = (args: string[], cwd: string, env?: Record<string, string>) => sh("npx", ["--no", ...args], cwd, env);
const show = (r: Run) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

after(() => rmSync(dir, { recursive: true, force: true }));

describe("a project of one's own: beta9 init, npm install, types, npx beta9", () => {
  test("beta9 init writes the template and installs beta9 from the tarball, with @beta9/protocol only from inside it", async () => {
    const started = Date.now();
    const init = await sh(process.execPath, [cli, "init", "my-app"], dir);
    process.stdout.write(`# beta9 init (pack when stale + npm install): ${Date.now() - started} ms\n`);
    assert.equal(init.code, 0, show(init));
    assert.match(init.stdout, /next: cd my-app && npx beta9 deploy app\.ts:hello/);
    for (const file of ["package.json", "tsconfig.json", "app.ts", "README.md", "node_modules/beta9/package.json"]) assert.ok(existsSync(join(app, file)), file);

    const spec = (JSON.parse(readFileSync(join(app, "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies.beta9!;
    assert.match(spec, /^file:\/.*\/beta9-[0-9.]+\.tgz$/);
    process.stdout.write(`# tarball: ${(statSync(spec.slice(5)).size / 1024).toFixed(0)} KiB\n`);

    const lock = JSON.parse(readFileSync(join(app, "package-lock.json"), "utf8")) as { packages: Record<string, { inBundle?: boolean; resolved?: string }> };
    const workspaceNames = Object.entries(lock.packages).filter(([path]) => path.includes("node_modules/@beta9/"));
    assert.deepEqual(workspaceNames.map(([path, entry]) => [path, entry.inBundle === true, entry.resolved]), [["node_modules/beta9/node_modules/@beta9/protocol", true, undefined]]);
    assert.ok(!Object.keys(lock.packages).some((p) => p.endsWith("/better-sqlite3")), "a client install compiles nothing");

    const again = await sh(process.execPath, [cli, "init", "my-app", "--no-install"], dir);
    assert.equal(again.code, 2, show(again));
    assert.match(again.stderr, /FILE_EXISTS: package\.json, tsconfig\.json, app\.ts, README\.md, \.gitignore already exist .*--force/);
  });

  test("the template type-checks against the installed SDK's types, and a wrong input field does not", async () => {
    const ok = await npx(["tsc", "--noEmit"], app);
    assert.equal(ok.code, 0, show(ok));
    writeFileSync(join(app, "typo.ts"), `import { endpoint, Image, schema } from "beta9";
export const typo = endpoint({ name: "typo", image: Image.scratch(), inputs: schema.object({ count: schema.number() }) }, async (input) => input.cuont);
`);
    try {
      const bad = await npx(["tsc", "--noEmit"], app);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stdout, /typo\.ts.*Property 'cuont' does not exist/);
    } finally {
      rmSync(join(app, "typo.ts"));
    }
  });

  test("npx beta9 from the project: the version; up says where the platform runs, without a stack trace", async () => {
    const version = await npx(["beta9", "--version"], app);
    assert.equal(version.code, 0, show(version));
    assert.match(version.stdout.trim(), /^[0-9]+\.[0-9]+\.[0-9]+$/);
    const up = await npx(["beta9", "up", "--data-dir", join(dir, "data")], app);
    assert.equal(up.code, 1, show(up));
    assert.match(up.stderr, /^error: PLATFORM_NOT_INSTALLED: `beta9 up` runs the platform.*source checkout/);
    assert.doesNotMatch(up.stderr, /^\s+at /m);
  });

  describe("deploys to a real gateway and runc worker", { skip: runcSkip }, () => {
    let gateway: RunningGateway;
    let worker: StartedWorker;
    let client: Client;
    let env: Record<string, string>;

    before(async () => {
      gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
      worker = await startWorker({
        gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"),
        logger: pino({ level: "silent" }), runtime: "runc", name: "ownproj", subnet: "10.223.61.0/24", workerId: "ownproj",
      });
      await worker.connected;
      const key = gateway.bootstrap!.token.key;
      client = new Client({ gateway: gateway.url, token: key });
      env = { BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key };
    });

    after(async () => {
      await client?.close();
      await worker?.close(1000);
      await gateway?.close();
    });

    test("npx beta9 deploy app.ts:hello from the project; the endpoint answers", async () => {
      const deployed = await npx(["beta9", "deploy", "app.ts:hello", "-q"], app, env);
      assert.equal(deployed.code, 0, show(deployed));
      assert.match(deployed.stdout, /deployed my-app v1/);
      assert.deepEqual(await client.callEndpoint("my-app", { name: "own project" }), { message: "Hello, own project!" });
    });

    test("a lone .ts file with no beta9 installed deploys with the checkout's CLI, on its own SDK", async () => {
      const lone = join(dir, "lone");
      mkdirSync(lone);
      writeFileSync(join(lone, "app.ts"), `import { endpoint, Image } from "beta9";
export const lone = endpoint({ name: "lone", image: Image.scratch(), cpu: 0.25, memory: "128Mi" }, async () => ({ alone: true }));
`);
      const deployed = await sh(process.execPath, [cli, "deploy", "app.ts:lone", "-q"], lone, env);
      assert.equal(deployed.code, 0, show(deployed));
      assert.match(deployed.stderr, /no beta9 package is installed for .*lone\/app\.ts; it uses this CLI's own SDK/);
      assert.deepEqual(await client.callEndpoint("lone", {}), { alone: true });
    });
  });
});

test("after the deploys, the host holds no container, mount, netns or veth of this test's worker", { skip: runcSkip }, () => {
  const ours = (state: ReturnType<typeof captureHostState>) => ownedBy(state, ["ownproj"], [dir]);
  assert.deepEqual(ours(captureHostState()), ours(hostBefore));
});
