/**
 * End to end on real parts: a gateway, a local runc worker, a real OCI registry, real image
 * builds, and the `beta9` CLI as a child process. Skipped (with the reason) where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { pino } from "pino";
import { Client, type Container } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { ensureRunnerBundle, runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState, ownedBy, makeTar, MediaType, RegistryClient, sha256Digest, startRegistry, type TestRegistry } from "@beta9/worker/testing";
import { localWorkerIdentity } from "./commands/up.js";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-e2e-"));
let gateway: RunningGateway;
let worker: StartedWorker;
let client: Client;
let registry: TestRegistry;
let key: string;
const hostBefore = captureHostState();

function beta9(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

async function finished(id: string): Promise<Container> {
  for (;;) {
    const c = await client.getContainer(id);
    if (c.state === "EXITED") return c;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function buildReady(spec: Parameters<Client["buildImage"]>[0]) {
  let image = await client.buildImage(spec);
  const lines: string[] = [];
  if (image.status === "building") {
    for await (const e of client.followImageBuild(image.id)) {
      if (e.kind === "log") lines.push(e.line.line);
      else image = e.image;
    }
  }
  assert.equal(image.status, "ready", `build failed: ${image.error}\n${lines.slice(-30).join("\n")}`);
  return image;
}

describe("containers end to end (gateway + runc worker + CLI)", { skip }, () => {
  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    key = gateway.bootstrap!.token.key;
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"),
      logger: pino({ level: "silent" }), runtime: "runc", name: "e2e", subnet: "10.219.240.0/24", workerId: "e2e",
      allowPrivateRegistries: true, // the test registry listens on loopback
    });
    await worker.connected;
    client = new Client({ gateway: gateway.url, token: key });
    registry = await startRegistry();
  });

  after(async () => {
    await client?.close();
    await worker?.close(1000);
    await gateway?.close();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an image pushed to a registry, holding no node and no shell, runs a script with the runner's own node; logs reach the CLI", async () => {
    const layer = makeTar([
      { name: "app/", type: "dir" },
      { name: "app/hello.mjs", content: 'console.log(`hello from ${process.env.GREETING} on node ${process.version}`);\nconsole.error("and a line on stderr");\n' },
    ]);
    const blob = join(dir, "layer.tar.gz");
    writeFileSync(blob, gzipSync(layer));
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Env: ["GREETING=an OCI image"] }, rootfs: { type: "layers", diff_ids: [sha256Digest(layer)] } }));
    const ref = `${registry.host}/e2e/app:v1`;
    const registryClient = new RegistryClient({ allowPrivate: true });
    await registryClient.push(ref, { config, layers: [{ path: blob, mediaType: MediaType.ociLayerGzip }] });
    await registryClient.close();

    const image = await buildReady({ base: { kind: "registry", ref }, steps: [], env: {} });
    const runner = ensureRunnerBundle(join(dir, "worker"));
    const run = await beta9(["container", "run", "--image", image.id, "--", ...runner.nodeArgv, "/app/hello.mjs"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /hello from an OCI image on node v\d+/);
    assert.match(run.stderr, /and a line on stderr/);
    const [latest] = (await client.listContainers()).filter((c) => c.imageId === image.id);
    const logs = await beta9(["container", "logs", latest!.id]);
    assert.match(logs.stdout, /hello from an OCI image/);
  });

  test("an image from the default base (Debian + python3) with a build step runs python; the same spec is not rebuilt", async () => {
    const spec = { base: { kind: "default" as const }, steps: [{ kind: "shell" as const, command: "echo built-in-a-step > /built.txt" }], env: { MODE: "e2e" } };
    const image = await buildReady(spec);
    const again = await client.buildImage(spec);
    assert.deepEqual([again.id, again.status], [image.id, "ready"], "an unchanged spec is not rebuilt");
    const c = await client.runContainer({ imageId: image.id, command: ["python3", "-c", "import os; print(open('/built.txt').read().strip(), os.environ['MODE'], 6 * 7)"] });
    const done = await finished(c.id);
    assert.deepEqual([done.reason, done.exitCode], ["exited", 0], done.message ?? "");
    const logs = await beta9(["container", "logs", c.id]);
    assert.equal(logs.stdout.trim(), "built-in-a-step e2e 42");
  });

  test("a failing build step names itself and its output; nothing is marked ready", async () => {
    const image = await client.buildImage({ base: { kind: "default" }, steps: [{ kind: "shell", command: "echo about to fail; exit 7" }], env: {} });
    let final = image;
    for await (const e of client.followImageBuild(image.id)) if (e.kind === "end") final = e.image;
    assert.equal(final.status, "failed");
    assert.match(final.error ?? "", /step 1\/1 \(shell: echo about to fail; exit 7\) failed with exit code 7/);
    assert.match(final.error ?? "", /about to fail/);
  });

  test("a memory hog is reported as OOM; stop ends a running container", async () => {
    const hog = await client.runContainer({ memory: "64Mi", command: ["python3", "-c", "x = []\nwhile True: x.append(' ' * 10_000_000)"] });
    const oom = await finished(hog.id);
    assert.equal(oom.reason, "oom", JSON.stringify(oom));
    const sleeper = await client.runContainer({ command: ["sleep", "300"] });
    while ((await client.getContainer(sleeper.id)).state !== "RUNNING") await new Promise((r) => setTimeout(r, 20));
    const stop = await beta9(["container", "stop", sleeper.id]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await finished(sleeper.id)).reason, "stopped");
  });

  test("a container's port is reachable from the worker's machine at the address it reports", async () => {
    const runner = ensureRunnerBundle(join(dir, "worker"));
    const c = await client.runContainer({ command: [...runner.nodeArgv, runner.runnerPath], ports: [8000] });
    let live = c;
    while (!live.ports["8000"]) live = await client.getContainer(c.id);
    const { host, port } = live.ports["8000"]!;
    let body = "";
    for (let i = 0; i < 500 && !body; i++) {
      body = await fetch(`http://${host}:${port}/health`).then((r) => r.text(), () => "");
      if (!body) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(JSON.parse(body).containerId, c.id);
    await client.stopContainer(c.id);
    await finished(c.id);
  });

  test("an endpoint deployed from TypeScript scales from zero, answers, reports handler errors, and scales back to zero", async () => {
    const app = join(dir, "endpoint-app.ts");
    writeFileSync(app, `
      const double = async (input: { n: number }) => {
        if (input.n < 0) throw new Error("n must not be negative");
        return { doubled: input.n * 2, pid: process.pid };
      };
      export const doubler = {
        __beta9Workload: true as const, kind: "endpoint" as const, name: "doubler",
        config: { cpu: 0.5, memory: "256Mi", keepWarmSeconds: 1 },
        handler: double,
        image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
      };
    `);
    const deployed = await beta9(["deploy", `${app}:doubler`, "--json", "-q"]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const deployment = JSON.parse(deployed.stdout) as { name: string; version: number; stubId: string };
    assert.deepEqual([deployment.name, deployment.version], ["doubler", 1]);
    const redeployed = JSON.parse((await beta9(["deploy", `${app}:doubler`, "--json", "-q"])).stdout) as { version: number; stubId: string };
    assert.deepEqual([redeployed.version, redeployed.stubId], [2, deployment.stubId], "unchanged code and config reuse the stub");

    const call = (body: unknown, path = "/endpoint/doubler") => fetch(gateway.url + path, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body),
    });
    const running = () => client.listContainers({ active: true }).then((cs) => cs.filter((c) => c.stubId === deployment.stubId));
    assert.equal((await running()).length, 0, "nothing runs before the first request");
    const first = await call({ n: 21 });
    assert.equal(first.status, 200, await first.clone().text());
    const answer = (await first.json()) as { doubled: number; pid: number };
    assert.equal(answer.doubled, 42);
    const [second, third] = await Promise.all([call({ n: 1 }, "/endpoint/doubler/v1"), call({ n: 2 }, "/endpoint/doubler/latest")]);
    assert.deepEqual([(await second.json() as { doubled: number }).doubled, (await third.json() as { doubled: number }).doubled], [2, 4]);
    const failed = await call({ n: -1 });
    assert.equal(failed.status, 500);
    const error = (await failed.json()) as { error: { code: string; message: string; details?: { stack?: string } } };
    assert.equal(error.error.code, "HANDLER_ERROR");
    assert.match(error.error.message, /n must not be negative/);
    // The bundle's source map: the stack names the user's TypeScript file and the line that threw.
    assert.match(error.error.details?.stack ?? "", /endpoint-app\.ts:3:\d+/, JSON.stringify(error));
    assert.equal((await running()).length, 1, "one container served all of it");
    for (let i = 0; i < 400 && (await running()).length > 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal((await running()).length, 0, "idle past keep-warm: scaled to zero");
  });

  test("a task queue: a task that throws twice completes after 2 retries; cancel mid-run; timeout", async () => {
    const app = join(dir, "queue-app.ts");
    writeFileSync(app, `
      import { existsSync, readFileSync, writeFileSync } from "node:fs";
      export const flaky = {
        __beta9Workload: true as const, kind: "taskqueue" as const, name: "flaky",
        config: { cpu: 0.5, memory: "256Mi", keepWarmSeconds: 5, taskPolicy: { maxRetries: 3, timeout: 2 } },
        image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
        handler: async (input: { mode: string; key?: string }, ctx: { signal: AbortSignal }) => {
          if (input.mode === "flaky") {
            const file = "/tmp/attempts-" + input.key;
            const attempts = (existsSync(file) ? Number(readFileSync(file, "utf8")) : 0) + 1;
            writeFileSync(file, String(attempts));
            if (attempts < 3) throw new Error("attempt " + attempts + " fails");
            return { attempts };
          }
          await new Promise((resolve) => { ctx.signal.addEventListener("abort", resolve); setTimeout(resolve, 60_000); });
          return { aborted: ctx.signal.aborted };
        },
      };
    `);
    const deployed = await beta9(["deploy", `${app}:flaky`, "--json", "-q"]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const put = async (input: unknown) => {
      const res = await fetch(`${gateway.url}/taskqueue/flaky`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(input) });
      assert.equal(res.status, 200, await res.clone().text());
      return ((await res.json()) as { task_id: string }).task_id;
    };
    const until = async (id: string, statuses: string[]) => {
      for (let i = 0; i < 600; i++) {
        const t = await client.getTask(id);
        if (statuses.includes(t.status)) return t;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`task ${id} never reached ${statuses.join("/")}: ${JSON.stringify(await client.getTask(id))}`);
    };
    const flakyTask = await until(await put({ mode: "flaky", key: "a" }), ["COMPLETE", "ERROR"]);
    assert.deepEqual([flakyTask.status, flakyTask.retries, flakyTask.result], ["COMPLETE", 2, { attempts: 3 }], JSON.stringify(flakyTask));

    const slow = await put({ mode: "wait" });
    await until(slow, ["RUNNING"]);
    const cancelled = await beta9(["task", "cancel", slow]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.equal((await client.getTask(slow)).status, "CANCELLED");
    const shown = await beta9(["task", "get", flakyTask.id, "--json"]);
    assert.deepEqual(JSON.parse(shown.stdout).result, { attempts: 3 });

    const stuck = await until(await put({ mode: "wait" }), ["TIMEOUT", "ERROR", "COMPLETE"]);
    assert.equal(stuck.status, "TIMEOUT", JSON.stringify(stuck));
  });

  test("the seed's examples in TypeScript deploy and answer: inference endpoint, task queue, put from an app", async () => {
    const examples = fileURLToPath(new URL("../../../examples/", import.meta.url));
    const inference = await beta9(["deploy", join(examples, "inference.ts") + ":classify", "-q"]);
    assert.equal(inference.code, 0, inference.stderr);
    const res = await fetch(`${gateway.url}/endpoint/classifier`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
    assert.deepEqual(await res.json(), { label: "cat", confidence: 0.97 });
    // Stopping the deployment stops its containers at once (no keep-warm wait) and frees the worker.
    const classifier = (await client.listDeployments({ name: "classifier" }))[0]!;
    assert.equal((await beta9(["deployment", "stop", classifier.id])).code, 0);
    for (let i = 0; i < 200 && (await client.listContainers({ active: true })).some((c) => c.stubId === classifier.stubId); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal((await client.listContainers({ active: true })).filter((c) => c.stubId === classifier.stubId).length, 0);
    const queue = await beta9(["deploy", join(examples, "task-queue.ts") + ":processImage", "-q"]);
    assert.equal(queue.code, 0, queue.stderr);
    const taskId = await client.putTask("ts-image-processor", { imageUrl: "https://example.com/image.jpg" });
    const task = await client.waitForTask(taskId);
    assert.deepEqual([task.status, task.result], ["COMPLETE", { imageUrl: "https://example.com/image.jpg" }]);
    const ran = await beta9(["run", join(examples, "function.ts") + ":square", "--input", '{"n": 12}', "-q"]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.deepEqual(JSON.parse(ran.stdout), { n: 12, square: 144 });
    // The SDK side: the same export, deployed, called from code; map keeps input order.
    assert.equal((await beta9(["deploy", join(examples, "function.ts") + ":square", "-q"])).code, 0);
    const { tsImport } = await import("tsx/esm/api");
    const { square } = (await tsImport(join(examples, "function.ts"), import.meta.url)) as {
      square: { remote(i: unknown, o: unknown): Promise<unknown>; map(i: unknown[], o: unknown): AsyncGenerator<{ square: number }> };
    };
    assert.deepEqual(await square.remote({ n: 3 }, { client }), { n: 3, square: 9 });
    const squares: number[] = [];
    for await (const r of square.map([1, 2, 3, 4, 5].map((n) => ({ n })), { client, concurrency: 3 })) squares.push(r.square);
    assert.deepEqual(squares, [1, 4, 9, 16, 25]);
    const badRun = await beta9(["run", join(examples, "function.ts") + ":square", "--input", '{"n": "x"}', "-q"]);
    assert.equal(badRun.code, 2, "a bad --input is a usage error, found before anything is built");
    assert.match(badRun.stderr, /input.n: expected a number/);
    await assert.rejects(client.putTask("ts-image-processor", { imageUrl: 42 }).then((id) => client.waitForTask(id)).then((t) => {
      if (t.status === "ERROR") throw new Error(t.error ?? "");
      return t;
    }), /input.imageUrl: expected a string/);
  });

  test("a worker killed with -9 mid-run: its container is lost at the gateway, and its restart removes every mount, netns, veth, cgroup and container it left", async () => {
    const workerToken = (await client.createToken({ type: "worker" })).key;
    const stateDir = join(dir, "killed-worker");
    const startWorkerProcess = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, [cli, "worker", "--gateway", gateway.url, "--token", workerToken, "--state-dir", stateDir,
        "--name", "e2k", "--subnet", "10.219.241.0/24", "--id", "killme", "--pool", "killpool", "--runtime", "runc", "--log-level", "error"],
      { stdio: ["ignore", "pipe", "pipe"] });
      for (let i = 0; i < 500 && !(await client.listWorkers()).some((w) => w.id === "killme" && w.connected); i++) await new Promise((r) => setTimeout(r, 20));
      return child;
    };
    const first = await startWorkerProcess();
    const c = await client.runContainer({ pool: "killpool", command: ["sleep", "600"] });
    while ((await client.getContainer(c.id)).state !== "RUNNING") await new Promise((r) => setTimeout(r, 20));
    const leftovers = () => {
      const state = captureHostState();
      const ours = (xs: string[]) => xs.filter((x) => x.includes("e2k") || x.includes(stateDir));
      const containers = execFileSync("runc", ["--root", join(stateDir, "runc", "runc"), "list", "-q"], { encoding: "utf8" }).split("\n").filter(Boolean);
      return { netns: ours(state.netns), veths: ours(state.veths), mounts: ours(state.overlayMounts), cgroups: ours(state.cgroupDirs), containers };
    };
    assert.ok(leftovers().containers.length === 1 && leftovers().mounts.length === 1, JSON.stringify(leftovers()));
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    const lost = await finished(c.id);
    assert.equal(lost.reason, "worker_lost");
    const second = await startWorkerProcess();
    try {
      assert.deepEqual(leftovers(), { netns: [], veths: [], mounts: [], cgroups: [], containers: [] });
    } finally {
      const exited = new Promise((r) => second.once("exit", r));
      second.kill("SIGTERM");
      await exited;
    }
  });
});

test("`beta9 up` on a fresh data dir starts gateway and worker, deploys the sample app and shows it answering", { skip }, async () => {
  // The default image's background build is the README walk's to see (readme-e2e): here it would
  // outlive this file's time, and --no-prepare-image must keep it from starting.
  const up = spawn(process.execPath, [cli, "up", "--no-prepare-image", "--port", "0", "--data-dir", join(dir, "up-data"), "--log-level", "error"], {
    env: { ...process.env, BETA9_CONFIG_DIR: join(dir, "up-cfg"), NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  up.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  up.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  try {
    for (let i = 0; i < 1200 && !/ready in \d+ ms/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /worker: local \(runc\)/);
    assert.match(out, /sample app: hello v1 answered \{"message":"Hello, beta9!"\}/, out);
    assert.doesNotMatch(out, /default image/, "--no-prepare-image: no background build");
  } finally {
    const exited = new Promise((r) => up.once("exit", r));
    up.kill("SIGINT");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("after everything stopped, the host holds no container, mount, netns or veth of ours", { skip }, () => {
  // Only what this file's workers own: other test files run beside this one and come and go.
  const names = ["e2e", "e2k", localWorkerIdentity(join(dir, "up-data")).name];
  assert.deepEqual(ownedBy(captureHostState(), names, [dir]), ownedBy(hostBefore, names, [dir]));
});
