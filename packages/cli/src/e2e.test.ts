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
import { captureHostState, makeTar, MediaType, RegistryClient, sha256Digest, startRegistry, type TestRegistry } from "@beta9/worker/testing";

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
    const registryClient = new RegistryClient();
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

test("after everything stopped, the host holds no container, mount, netns or veth of ours", { skip }, () => {
  const now = captureHostState();
  assert.deepEqual({ ...now, iptables: undefined }, { ...hostBefore, iptables: undefined });
});
