/**
 * End to end: the built `beta9` binary as a child process against a real gateway started by
 * `beta9 up`, each run with its own config and data directories under the system temp dir.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { Client, type Container, type Deployment, type Task, type Token, type TokenWithKey, type Workspace } from "beta9";
import { buildProgram, commandPath, forEachCommand } from "./program.js";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
const gatewayBuilt = existsSync(fileURLToPath(new URL("../../gateway/dist/index.js", import.meta.url)));

type Env = Record<string, string | undefined>;
interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `beta9-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** The parent's environment without any BETA9_* that would leak into the child, and no colours. */
function childEnv(extra: Env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { NO_COLOR: "1" };
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("BETA9_")) env[key] = value;
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) env[key] = value;
  return env;
}

function beta9(args: string[], env: Env): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Server {
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then the exit code (SIGKILL and null after 10 s). */
  stop(): Promise<number | null>;
}

/** Starts `beta9 up|gateway` and resolves once it prints "ready in". */
function startServer(args: string[], env: Env): Promise<Server> {
  const child = spawn(process.execPath, [MAIN, ...args, "--log-level", "warn"], {
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const server: Server = {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`not ready after 20 s:\n${out}`));
    }, 20_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (/ready in \d+ ms/.test(out)) {
        clearTimeout(timer);
        resolve(server);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before it was ready:\n${out}`));
    });
  });
}

function json<T>(result: Result): T {
  assert.equal(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

function assertFails(result: Result, code: number, errorCode: string | RegExp): void {
  assert.equal(result.code, code, `expected exit ${code}, got ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  const pattern = typeof errorCode === "string" ? new RegExp(`^error: ${errorCode}: \\S`, "m") : errorCode;
  assert.match(result.stderr, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

test("--help works on every command", async () => {
  const paths: string[][] = [];
  forEachCommand(buildProgram(), (command) => paths.push(commandPath(command).split(" ").slice(1)));
  assert.ok(paths.length >= 15, `only ${paths.length} commands`);
  const env = { BETA9_CONFIG_DIR: tempDir("help") };
  // A few at a time: each is a node process, and dozens at once on a small CI machine can outlast beta9()'s kill timer.
  const queue = [...paths];
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let path = queue.shift(); path; path = queue.shift()) {
      const result = await beta9([...path, "--help"], env);
      assert.equal(result.code, 0, `${path.join(" ")} --help: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^Usage: ${["beta9", ...path].join(" ")} `), path.join(" "));
    }
  }));
});

test("usage errors exit 2 with a USAGE error line", async () => {
  const env = { BETA9_CONFIG_DIR: tempDir("usage") };
  assertFails(await beta9(["deployment", "list", "--no-such-option"], env), 2, "USAGE");
  assertFails(await beta9(["no-such-command"], env), 2, "USAGE");
  assertFails(await beta9(["token", "revoke"], env), 2, "USAGE");
  assertFails(await beta9(["deployment", "list", "--limit", "x"], env), 2, "USAGE");
  assertFails(await beta9(["deployment", "list", "--active", "--inactive"], env), 2, "USAGE");
  assertFails(await beta9(["token", "create", "--type", "root"], env), 2, "USAGE");
  assertFails(await beta9(["up", "--port", "70000"], env), 2, "USAGE");
  assertFails(await beta9(["config", "create", "x", "--gateway", "not a url", "--token", "t"], env), 2, "INVALID_ARGUMENT");
});

test("an unreachable gateway exits 5 and names the URL", async () => {
  const gateway = `http://127.0.0.1:${await freePort()}`;
  const result = await beta9(["deployment", "list"], { BETA9_CONFIG_DIR: tempDir("unreachable"), BETA9_GATEWAY: gateway, BETA9_TOKEN: "b9_x" });
  assertFails(result, 5, "UNREACHABLE");
  assert.ok(result.stderr.includes(gateway));
});

describe("against a gateway started by `beta9 up`", { skip: gatewayBuilt ? false : "packages/gateway is not built" }, () => {
  let configDir: string;
  let dataDir: string;
  let port: number;
  let server: Server | undefined;
  let adminToken: string;
  let env: Env;

  before(async () => {
    configDir = tempDir("config");
    dataDir = tempDir("data");
    port = await freePort();
    env = { BETA9_CONFIG_DIR: configDir };
    // The CLI surface is under test here, not the worker (e2e.test.ts covers that): no local worker.
    server = await startServer(["up", "--no-worker", "--port", String(port), "--data-dir", dataDir], env);
  });
  after(async () => {
    await server?.stop();
  });

  test("up prints the admin token once and saves it as the selected context", () => {
    const match = /^admin token: (\S+)$/m.exec(server!.output());
    assert.ok(match, server!.output());
    adminToken = match[1]!;
    assert.match(server!.output(), new RegExp(`gateway: http://127\\.0\\.0\\.1:${port}`));
    const path = join(configDir, "config.json");
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), {
      current: "default",
      contexts: { default: { gateway: `http://127.0.0.1:${port}`, token: adminToken } },
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test("deployment list --json uses the saved context and prints []", async () => {
    const result = await beta9(["deployment", "list", "--json"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "[]");
  });

  test("token create, list and revoke", async () => {
    const created = json<TokenWithKey>(await beta9(["token", "create", "--name", "ci", "--json"], env));
    assert.equal(created.type, "workspace");
    assert.equal(created.name, "ci");
    assert.match(created.key, /\S{16,}/);
    const listed = json<Token[]>(await beta9(["token", "list", "--json"], env));
    const mine = listed.find((t) => t.id === created.id);
    assert.ok(mine && mine.active, "listed and active");
    assert.ok(!JSON.stringify(listed).includes(created.key), "list never shows a key");
    assert.equal(json<Token[]>(await beta9(["token", "list", "--json"], { ...env, BETA9_TOKEN: created.key })).length, listed.length);

    const revoked = await beta9(["token", "revoke", "ci"], env); // by its name
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.ok(revoked.stdout.includes(created.id));
    assertFails(await beta9(["token", "list"], { ...env, BETA9_TOKEN: created.key }), 3, "AUTH_TOKEN_INVALID");
    const spare = json<TokenWithKey>(await beta9(["token", "create", "--json"], env));
    assert.equal((await beta9(["token", "revoke", spare.id.slice(0, 8)], env)).code, 0, "by a unique start of its id");
    assertFails(await beta9(["token", "revoke", "no-such-token"], env), 4, "RESOURCE_NOT_FOUND");
  });

  test("run without --input, or with one its schema refuses, is a usage error naming an input that fits", async () => {
    const square = fileURLToPath(new URL("../../../examples/function.ts", import.meta.url)) + ":square";
    const missing = await beta9(["run", square], env);
    assertFails(missing, 2, "USAGE");
    assert.match(missing.stderr, /needs an input \(input\.n: required \(expected a number\)\): add --input '\{"n":1\}'/);
    const wrong = await beta9(["run", square, "--input", '{"n": "x"}'], env);
    assertFails(wrong, 2, "INPUT_INVALID");
    assert.match(wrong.stderr, /input\.n: expected a number, got "x"; e\.g\. --input '\{"n":1\}'/);
  });

  test("sandbox terminate --all ends every sandbox that has not ended; neither ids nor --all is a usage error", async () => {
    const client = new Client({ gateway: `http://127.0.0.1:${port}`, token: adminToken });
    const made = [await client.request<{ id: string }>("POST", "/sandbox", { body: {} }), await client.request<{ id: string }>("POST", "/sandbox", { body: {} })];
    await client.close();
    const ended = await beta9(["sandbox", "terminate", "--all"], env);
    assert.equal(ended.code, 0, ended.stderr);
    for (const s of made) assert.match(ended.stdout, new RegExp(`terminated ${s.id}`));
    assert.match((await beta9(["sandbox", "terminate", "--all"], env)).stdout, /no sandbox is running/);
    assertFails(await beta9(["sandbox", "terminate"], env), 2, "USAGE");
  });

  test("machines by a start of their id", async () => {
    const created = json<{ machine: { id: string } }>(await beta9(["machine", "create", "--pool", "edge", "--json"], env));
    const cordoned = await beta9(["machine", "cordon", created.machine.id.slice(0, 6)], env);
    assert.equal(cordoned.code, 0, cordoned.stderr);
    assert.match(cordoned.stdout, new RegExp(`machine ${created.machine.id} cordoned`));
    assert.equal((await beta9(["machine", "delete", created.machine.id.slice(0, 6)], env)).code, 0);
  });

  test("a bad token exits 3; an unknown deployment exits 4", async () => {
    assertFails(await beta9(["deployment", "list"], { ...env, BETA9_TOKEN: "b9_not_a_real_token_000000" }), 3, "AUTH_TOKEN_INVALID");
    assertFails(await beta9(["deployment", "stop", "no-such-deployment"], env), 4, "RESOURCE_NOT_FOUND");
  });

  test("deployment list filters, stop, start and delete (one failure does not stop the rest)", async () => {
    const client = new Client({ gateway: `http://127.0.0.1:${port}`, token: adminToken });
    const { stub } = await client.createStub({ name: "web", type: "endpoint/deployment" });
    const deployment = await client.createDeployment({ stubId: stub.id });
    await client.close();

    const table = await beta9(["deployment", "list"], env);
    assert.match(table.stdout, /^ID\s+NAME\s+VERSION/);
    assert.ok(table.stdout.includes(deployment.id) && !table.stdout.includes("\x1b["), "plain table, no colours");
    assert.deepEqual(json<Deployment[]>(await beta9(["deployment", "list", "--json", "--name", "web"], env)).map((d) => d.id), [deployment.id]);
    assert.deepEqual(json<Deployment[]>(await beta9(["deployment", "list", "--json", "--name", "other"], env)), []);

    const stopped = await beta9(["deployment", "stop", "web"], env); // by name: its latest version
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /^stopped web v1 /);
    assert.equal(json<Deployment[]>(await beta9(["deployment", "list", "--json", "--active"], env)).length, 0);
    assert.equal(json<Deployment[]>(await beta9(["deployment", "list", "--json", "--inactive"], env)).length, 1);
    assert.equal((await beta9(["deployment", "start", "web/v1"], env)).code, 0);
    assert.equal(json<Deployment[]>(await beta9(["deployment", "list", "--json", "--active", "--limit", "1"], env)).length, 1);

    const deleted = await beta9(["deployment", "delete", "no-such-deployment", deployment.id], env);
    assertFails(deleted, 4, "RESOURCE_NOT_FOUND");
    assert.match(deleted.stdout, /^deleted /m, "the second id was still deleted");
    assert.deepEqual(json<Deployment[]>(await beta9(["deployment", "list", "--json"], env)), []);
  });

  test("a second workspace sees none of the first one's tokens or deployments", async () => {
    const client = new Client({ gateway: `http://127.0.0.1:${port}`, token: adminToken });
    const { stub } = await client.createStub({ name: "api", type: "endpoint/deployment" });
    const firstDeployment = await client.createDeployment({ stubId: stub.id });
    await client.close();
    const firstTokens = json<Token[]>(await beta9(["token", "list", "--json"], env));

    const created = json<{ workspace: Workspace; token: TokenWithKey }>(await beta9(["workspace", "create", "team-b", "--json"], env));
    assert.equal(created.workspace.name, "team-b");
    const names = json<Workspace[]>(await beta9(["workspace", "list", "--json"], env)).map((w) => w.name);
    assert.deepEqual(names.sort(), ["default", "team-b"]);

    const other = { ...env, BETA9_TOKEN: created.token.key };
    const otherTokens = json<Token[]>(await beta9(["token", "list", "--json"], other));
    assert.ok(otherTokens.length >= 1 && otherTokens.every((t) => t.workspaceId === created.workspace.id));
    assert.ok(!otherTokens.some((t) => firstTokens.some((f) => f.id === t.id)));
    assert.deepEqual(json<Deployment[]>(await beta9(["deployment", "list", "--json"], other)), []);
    assertFails(await beta9(["deployment", "stop", firstDeployment.id], other), 4, "RESOURCE_NOT_FOUND");
    assertFails(await beta9(["token", "revoke", firstTokens[0]!.id], other), 4, "RESOURCE_NOT_FOUND");
    assertFails(await beta9(["workspace", "list"], other), 3, "AUTH_FORBIDDEN");
  });

  test("config create, list (masked), --context, select and delete", async () => {
    const gateway = `http://127.0.0.1:${port}`;
    const createdCtx = await beta9(["config", "create", "broken", "--gateway", gateway, "--token", "b9_wrong_token_0000000000"], env);
    assert.equal(createdCtx.code, 0, createdCtx.stderr);
    const listed = json<Array<{ name: string; current: boolean; gateway: string; token: string }>>(
      await beta9(["config", "list", "--json"], env),
    );
    assert.deepEqual(
      listed.map((c) => [c.name, c.current]),
      [["default", true], ["broken", false]],
    );
    assert.ok(listed.every((c) => c.token.includes("****")) && !JSON.stringify(listed).includes(adminToken));
    const shown = json<Array<{ token: string }>>(await beta9(["config", "list", "--json", "--show-token"], env));
    assert.ok(JSON.stringify(shown).includes(adminToken));

    assertFails(await beta9(["--context", "broken", "token", "list"], env), 3, "AUTH_TOKEN_INVALID");
    assertFails(await beta9(["token", "list", "--context", "nope"], env), 4, "CONTEXT_NOT_FOUND");
    assert.equal((await beta9(["config", "select", "broken"], env)).code, 0);
    assertFails(await beta9(["token", "list"], env), 3, "AUTH_TOKEN_INVALID");
    assert.equal((await beta9(["token", "list", "--context", "default"], env)).code, 0);
    assert.equal((await beta9(["config", "select", "default"], env)).code, 0);
    assert.equal((await beta9(["config", "delete", "broken"], env)).code, 0);
    assertFails(await beta9(["config", "delete", "broken"], env), 4, "CONTEXT_NOT_FOUND");
    assert.deepEqual(json<unknown[]>(await beta9(["config", "list", "--json"], env)).length, 1);
  });

  test("task and container lists name the workload; task get says what a pending task waits for", async () => {
    const client = new Client({ gateway: `http://127.0.0.1:${port}`, token: adminToken });
    const bundle = Buffer.alloc(1024); // an empty tar: enough for a container that is never placed (no worker here)
    const hash = createHash("sha256").update(bundle).digest("hex");
    await client.putObject(hash, bundle);
    const { stub } = await client.createStub({ name: "thumbnails", type: "taskqueue/deployment", objectId: hash, config: { handler: "app.js:x" } });
    const { id } = await client.putTask({ stubId: stub.id }, {});
    for (let i = 0; i < 500 && !(await client.getTask(id)).waiting; i++) await new Promise((r) => setTimeout(r, 20));
    await client.close();

    const got = await beta9(["task", "get", id], env);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /^workload thumbnails \(stub /m);
    assert.match(got.stdout, /^waiting for capacity: no worker connected \(since /m);
    assert.equal(json<Task>(await beta9(["task", "get", id, "--json"], env)).waiting?.constraints[0], "no_worker");

    const tasks = await beta9(["task", "list"], env);
    assert.match(tasks.stdout, /^ID\s+NAME\s+STATUS/);
    assert.match(tasks.stdout, new RegExp(`^${id}\\s+thumbnails\\s+PENDING`, "m"));
    assert.equal(json<Task[]>(await beta9(["task", "list", "--json"], env)).find((t) => t.id === id)?.stubName, "thumbnails");
    const containers = await beta9(["container", "list"], env);
    assert.match(containers.stdout, /^ID\s+NAME\s+STATE/);
    assert.match(containers.stdout, /^\S+\s+thumbnails\s+PENDING/m);
    assert.deepEqual(json<Container[]>(await beta9(["container", "list", "--json"], env)).map((c) => c.stubName), ["thumbnails"]);
    assert.equal((await beta9(["task", "cancel", id], env)).code, 0);
  });

  test("SIGTERM stops it cleanly; a restart keeps the data and prints no new token", async () => {
    assert.equal(await server!.stop(), 0, server!.output());
    server = await startServer(["up", "--no-worker", "--port", String(port), "--data-dir", dataDir], env);
    assert.doesNotMatch(server.output(), /admin token/);
    assert.equal(json<Token[]>(await beta9(["token", "list", "--json"], env)).some((t) => t.type === "admin"), true);
  });
});

test("`beta9 gateway` prints the first token but saves no context", { skip: gatewayBuilt ? false : "packages/gateway is not built" }, async () => {
  const env = { BETA9_CONFIG_DIR: tempDir("gw-config") };
  const server = await startServer(["gateway", "--port", String(await freePort()), "--data-dir", tempDir("gw-data")], env);
  try {
    assert.match(server.output(), /^admin token: \S+$/m);
    assert.equal(existsSync(join(env.BETA9_CONFIG_DIR, "config.json")), false);
  } finally {
    assert.equal(await server.stop(), 0);
  }
});
