/**
 * External machines for real: two "machines" are network namespaces on a bridge, each running
 * the b9agent code (register, keepalive, its runc worker) dialling the gateway on the host side.
 * An iptables rule drops every connection the host opens into their subnet, as NAT would, so
 * workload traffic can only flow through the agents' own connections (the tunnel). Covered: join,
 * an endpoint and a task on a machine, cutting a machine's link (it expires, its task is retried on
 * the other machine), restoring it (ready again without a restart), cordon, drain and delete; a
 * secret and a volume used from both machines (the value in their containers and in no record, list,
 * log or gateway file; a file written on A read on B).
 * Everything it creates is removed afterwards, even on failure. Skipped where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Client, Sandbox, Volume, type Container, type Task } from "beta9";
import { RUNNER_PORT, type Machine, type MachineCreateResponse } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { RuncRuntime, runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { pino } from "pino";
import { WebSocket } from "ws";
import { captureHostState, PtyDriver } from "@beta9/worker/testing";

const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const agentCli = fileURLToPath(new URL("../../agent/dist/main.js", import.meta.url));
const agentIndex = new URL("../../agent/dist/index.js", import.meta.url).href;
const skip = runcUnavailableReason() ?? (existsSync(agentCli) ? undefined : "the agent package is not built (npx tsc -b)");

const tag = randomBytes(2).toString("hex");
const net = `10.${77 + (parseInt(tag, 16) % 50)}.${parseInt(tag.slice(0, 2), 16)}`;
const bridge = `b9m${tag}br`;
const subnet = `${net}.0/24`;
// Not on lo: the host still reaches its own address on the bridge (the gateway listens there).
const dropRule = ["OUTPUT", "!", "-o", "lo", "-d", subnet, "-p", "tcp", "--syn", "-j", "DROP"];
const dir = mkdtempSync(join(tmpdir(), "beta9-machines-e2e-"));

interface Node {
  letter: "a" | "b";
  netns: string;
  veth: string;
  ip: string;
  home: string;
  workerName: string;
  machine?: MachineCreateResponse;
  agent?: ChildProcess;
}
const nodes: Node[] = (["a", "b"] as const).map((letter, i) => ({
  letter, netns: `b9m${tag}${letter}`, veth: `b9m${tag}${letter}`, ip: `${net}.${i + 2}`, home: join(dir, `agent-${letter}`), workerName: `m${tag}${letter}`,
}));
const [A, B] = nodes as [Node, Node];

let gateway: RunningGateway;
let client: Client;
let key: string;
const hostBefore = captureHostState();
let builder: StartedWorker | undefined;

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const trySh = (cmd: string, args: string[]) => {
  try {
    return sh(cmd, args);
  } catch {
    return undefined;
  }
};

function run(bin: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1", ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}
const beta9 = (...args: string[]) => run(cli, args);

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function machines(): Promise<Machine[]> {
  const listed = await beta9("machine", "list", "--json");
  assert.equal(listed.code, 0, listed.stderr);
  return JSON.parse(listed.stdout) as Machine[];
}
const machineOf = async (node: Node) => (await machines()).find((m) => m.id === node.machine!.machine.id);

/** Runs the agent's own code (the Agent class b9agent runs) inside the netns, with a runtime name of its own. */
function startAgent(node: Node): void {
  const launcher = join(node.home, "launch.mjs");
  const pino = pathToFileURL(createRequire(import.meta.url).resolve("pino")).href;
  writeFileSync(launcher, `
    const { Agent, loadConfig } = await import(${JSON.stringify(agentIndex)});
    const { pino } = await import(${JSON.stringify(pino)});
    const home = process.env.B9AGENT_HOME;
    const config = loadConfig(home + "/config.yaml", home, "${node.netns}");
    const agent = new Agent({ config, logger: pino({ level: "info" }, pino.destination({ fd: 2, sync: true })),
      workerName: ${JSON.stringify(node.workerName)}, backoffMinMs: 200, backoffMaxMs: 2000 });
    agent.start();
    process.on("SIGTERM", () => agent.stop(5000).then(() => process.exit(0)));
  `);
  const log = openSync(join(node.home, "agent.log"), "a");
  node.agent = spawn("nsenter", [`--net=/run/netns/${node.netns}`, "--", process.execPath, launcher], {
    env: { ...process.env, B9AGENT_HOME: node.home }, stdio: ["ignore", log, log],
  });
  closeSync(log);
}

async function stopAgent(node: Node): Promise<void> {
  const child = node.agent;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

/** For failure messages: every container the gateway knows, its last log lines, and A's agent log. */
async function diagnose(): Promise<string> {
  const containers = await client.listContainers().catch(() => [] as Container[]);
  const logs = await Promise.all(containers.slice(0, 6).map(async (c) =>
    (await beta9("container", "logs", c.id)).stdout.split("\n").slice(-15).join("\n")));
  return JSON.stringify(containers.map((c) => [c.id, c.state, c.reason, c.message, c.workerId, c.ports]), null, 1) +
    `\n${logs.join("\n---\n")}\n--- agent a\n${agentLog(A)}\n--- agent b\n${agentLog(B)}`;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Every regular file below `root` (not following links). */
function filesUnder(root: string): string[] {
  return readdirSync(root, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

function agentLog(node: Node): string {
  return trySh("tail", ["-n", "40", join(node.home, "agent.log")]) ?? "";
}

/** Removes everything this file made, whatever state a failure left it in. */
async function teardown(): Promise<void> {
  await Promise.all(nodes.map(stopAgent));
  for (const node of nodes) {
    // What a killed agent could leave: runc containers, mounts, container netns, cgroups.
    const state = join(node.home, "state", "runc");
    if (existsSync(state)) {
      // close() too: reap() leaves the runtime a spare writable-layer disk (mounted) for its next start.
      const runtime = new RuncRuntime({ stateDir: state, name: node.workerName, runcPath: sh("which", ["runc"]).trim() });
      await runtime.reap().catch(() => undefined);
      await runtime.close().catch(() => undefined);
    }
    trySh("ip", ["netns", "del", node.netns]);
    trySh("ip", ["link", "del", node.veth]);
  }
  while (trySh("iptables", ["-D", ...dropRule]) !== undefined) { /* every copy */ }
  trySh("ip", ["link", "del", bridge]);
}

describe("external machines in network namespaces (gateway + b9agent code + runc)", { skip, timeout: 15 * 60_000 }, () => {
  before(async () => {
    await teardown();
    sh("ip", ["link", "add", bridge, "type", "bridge"]);
    sh("ip", ["addr", "add", `${net}.1/24`, "dev", bridge]);
    sh("ip", ["link", "set", bridge, "up"]);
    for (const node of nodes) {
      sh("ip", ["netns", "add", node.netns]);
      sh("ip", ["link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns]);
      sh("ip", ["link", "set", node.veth, "master", bridge, "up"]);
      sh("ip", ["-n", node.netns, "addr", "add", `${node.ip}/24`, "dev", "eth0"]);
      sh("ip", ["-n", node.netns, "link", "set", "eth0", "up"]);
      sh("ip", ["-n", node.netns, "link", "set", "lo", "up"]);
    }
    // As behind NAT: the host may answer the machines but never open a connection to them.
    sh("iptables", ["-I", ...dropRule]);
    gateway = await startGateway({
      dataDir: join(dir, "gw"), host: `${net}.1`, port: 0, logLevel: "silent",
      workerTimeoutMs: 3000, machineExpirySeconds: 3, machineKeepaliveSeconds: 1,
    });
    key = gateway.bootstrap!.token.key;
    client = new Client({ gateway: gateway.url, token: key });
    // Images are built on cluster workers only (a machine belongs to one workspace; images are
    // shared), as with `beta9 up`'s local worker. This one serves a pool no workload here asks for.
    builder = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "builder"), logger: pino({ level: "silent" }),
      runtime: "runc", name: "mbuild", subnet: "10.219.248.0/24", pool: "builders", workerId: "builder",
    });
    await builder.connected;
  });

  after(async () => {
    try {
      await client?.close();
      await builder?.close(2000);
      await teardown();
      await gateway?.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const now = captureHostState();
    const mine = (s: typeof now) => JSON.stringify(Object.values(s).flat().filter((e) => nodes.some((n) => e.includes(n.workerName) || e.includes(n.netns)) || e.includes(bridge)));
    assert.equal(mine(now), mine(hostBefore), "netns, veths, bridge, mounts, cgroups and rules are all gone");
    assert.equal(trySh("iptables", ["-C", ...dropRule]), undefined, "the DROP rule is gone");
  });

  test("machines join: create, b9agent init, register, keepalive → ready with a connected worker", async () => {
    // As the seed writes it: the first `machine create --pool edge` makes the pool (admin token).
    for (const [i, node] of nodes.entries()) {
      const created = await beta9("machine", "create", "--pool", "edge", "--json");
      assert.equal(created.code, 0, created.stderr);
      assert.equal(/created pool edge/.test(created.stderr), i === 0, created.stderr);
      node.machine = JSON.parse(created.stdout) as MachineCreateResponse;
      mkdirSync(node.home, { recursive: true });
      const env = { B9AGENT_HOME: node.home };
      const init = await run(agentCli, ["init", "--gateway", `${net}.1:${gateway.port}`, "--token", node.machine.token, "--pool", "edge"], env);
      assert.equal(init.code, 0, init.stderr);
      for (const [k, v] of [["runtime", "runc"], ["stateDir", join(node.home, "state")], ["keepaliveIntervalSeconds", "1"], ["metricsPort", "0"]]) {
        const set = await run(agentCli, ["config", "set", k!, v!], env);
        assert.equal(set.code, 0, set.stderr);
      }
      startAgent(node);
    }
    for (const node of nodes) {
      const m = await until(`machine ${node.letter} ready`, async () => {
        const m = await machineOf(node);
        return m?.state === "ready" && m.workerConnected ? m : undefined;
      }).catch((err: Error) => assert.fail(`${err.message}\n${agentLog(node)}`));
      assert.equal(m.pool, "edge");
      assert.ok(m.cpuMillicores > 0 && m.memoryMiB > 0 && m.metrics !== null);
    }
    const pools = JSON.parse((await beta9("pool", "list", "--json")).stdout) as { name: string }[];
    assert.ok(pools.some((p) => p.name === "edge"));
    const human = await beta9("machine", "create", "--pool", "edge");
    const spare = /created machine (\S+)/.exec(human.stdout)?.[1];
    assert.match(human.stdout, /b9agent init --gateway \S+ --token b9_\S+ --pool edge/, human.stdout);
    assert.equal((await beta9("machine", "delete", spare!)).code, 0);
    const table = await beta9("machine", "list", "--pool", "edge");
    assert.match(table.stdout, /LAST HEARTBEAT/);
    assert.equal(table.stdout.match(/ready/g)?.length, 2, table.stdout);
  });

  test("a machine token cannot act as a workspace token", async () => {
    const res = await fetch(`${gateway.url}/api/v1/deployment`, { headers: { authorization: `Bearer ${A.machine!.token}` } });
    assert.equal(res.status, 403);
  });

  let endpointStub = "";
  let queueStub = "";
  test("an endpoint and a task run on the external machine, reached only through its tunnel", async () => {
    assert.equal((await beta9("machine", "cordon", B.machine!.machine.id)).code, 0);
    const app = join(dir, "edge-app.ts");
    writeFileSync(app, `
      import { hostname } from "node:os";
      const image = { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) };
      export const echo = {
        __beta9Workload: true as const, kind: "endpoint" as const, name: "edge-echo",
        config: { cpu: 0.25, memory: "256Mi", keepWarmSeconds: 600, pool: "edge" }, image,
        handler: async (input: { n: number }) => ({ n: input.n, container: hostname() }),
      };
      export const slow = {
        __beta9Workload: true as const, kind: "taskqueue" as const, name: "edge-slow",
        config: { cpu: 0.25, memory: "256Mi", keepWarmSeconds: 600, pool: "edge", taskPolicy: { maxRetries: 3, timeout: 300 } },
        image,
        handler: async (input: { ms: number }) => {
          await new Promise((r) => setTimeout(r, input.ms));
          return { container: hostname() };
        },
      };
    `);
    for (const name of ["echo", "slow"]) {
      const deployed = await beta9("deploy", `${app}:${name}`, "--json", "-q");
      assert.equal(deployed.code, 0, deployed.stderr);
      if (name === "echo") endpointStub = JSON.parse(deployed.stdout).stubId;
      else queueStub = JSON.parse(deployed.stdout).stubId;
    }
    const res = await fetch(`${gateway.url}/endpoint/edge-echo`, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n: 7 }),
    });
    assert.equal(res.status, 200, `${await res.clone().text()}\n${await diagnose()}`);
    assert.equal(((await res.json()) as { n: number }).n, 7);
    const [container] = (await client.listContainers({ active: true })).filter((c) => c.stubId === endpointStub);
    assert.equal(container?.workerId, A.machine!.machine.id);
    const address = container!.ports[String(RUNNER_PORT)]!;
    assert.equal(address.host, "127.0.0.1", "the gateway reaches the container through its own loopback listener");
    const listeners = sh("ss", ["-Hltnp", `sport = :${address.port}`]);
    assert.match(listeners, new RegExp(`pid=${process.pid},`), "the listener belongs to the gateway process, not the machine");

    const task = await client.putTask("edge-slow", { ms: 10 });
    const done = await client.waitForTask(task);
    assert.equal(done.status, "COMPLETE", JSON.stringify(done));
  });

  test("a WebSocket reaches a realtime endpoint on the external machine through its tunnel: echo and close codes both ways", async () => {
    const app = join(dir, "edge-ws.ts");
    writeFileSync(app, `
      export const ws = {
        __beta9Workload: true as const, kind: "endpoint" as const, name: "edge-ws",
        config: { cpu: 0.25, memory: "256Mi", keepWarmSeconds: 600, pool: "edge", realtime: true, concurrentRequests: 4 },
        image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
        handler: async (socket: AsyncIterable<string> & { send(m: string): Promise<void>; close(code: number, reason: string): void }) => {
          for await (const m of socket) {
            if (m === "bye") return socket.close(4001, "edge says bye");
            await socket.send("edge: " + m);
          }
        },
      };
    `);
    const deployed = await beta9("deploy", `${app}:ws`, "--json", "-q");
    assert.equal(deployed.code, 0, deployed.stderr);
    const stubId = JSON.parse(deployed.stdout).stubId as string;
    const url = `${gateway.url.replace(/^http/, "ws")}/endpoint/edge-ws`;
    const open = async () => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false });
      await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
      return ws;
    };
    const next = (ws: WebSocket) => new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
    const closed = (ws: WebSocket) => new Promise<[number, string]>((resolve) => ws.once("close", (code, reason) => resolve([code, String(reason)])));
    const ws = await open().catch(async (err: Error) => assert.fail(`${err.message}\n${await diagnose()}`));
    ws.send("hello");
    assert.equal(await next(ws), "edge: hello");
    const [container] = (await client.listContainers({ active: true })).filter((c) => c.stubId === stubId);
    assert.equal(container?.workerId, A.machine!.machine.id);
    assert.equal(container!.ports[String(RUNNER_PORT)]!.host, "127.0.0.1", "reached through the gateway's tunnel listener");
    const byHandler = closed(ws);
    ws.send("bye");
    assert.deepEqual(await byHandler, [4001, "edge says bye"]);
    const ws2 = await open();
    const byClient = closed(ws2);
    ws2.close(4100, "client leaves");
    assert.deepEqual(await byClient, [4100, "client leaves"], "the handler answered the client's close with its code");
  });

  test("beta9 shell into a container on the machine, through its tunnel: typed into on a PTY, resized, its exit code", async () => {
    assert.equal((await beta9("machine", "cordon", B.machine!.machine.id)).code, 0);
    const created = await client.runContainer({ command: ["sleep", "600"], cpu: "250m", memory: "128Mi", pool: "edge" });
    const running = await until("the container running on A", async () => {
      const c = await client.getContainer(created.id);
      return c.state === "RUNNING" ? c : c.state === "EXITED" ? assert.fail(JSON.stringify(c)) : undefined;
    });
    assert.equal(running.workerId, A.machine!.machine.id);
    const d = new PtyDriver([process.execPath, cli, "shell", created.id.slice(0, 8)], {
      env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1", TERM: "xterm" },
    });
    try {
      let at = (await d.waitFor(/# $/)).end;
      d.type("echo $((6*7)); tty\r");
      at = (await d.waitFor(/[\r\n]42\r*\n\/dev\/pts\/\d+\r*\n/, at)).end;
      d.resize(111, 33);
      for (let seen = false; !seen;) {
        await d.waitFor(/# $/, at);
        at = d.output.length;
        d.type("stty size\r");
        const m = await d.waitFor(/[\r\n](\d+ \d+)\r*\n/, at);
        at = m.end;
        seen = m[1] === "33 111";
      }
      d.type("exit 3\r");
      assert.equal(await d.exit, 3, d.output);
    } finally {
      d.kill();
      await client.stopContainer(created.id).catch(() => undefined);
    }
  });

  test("a secret and a volume on both machines: the secret reaches each machine's containers and no record, list or log; a file written on A is read on B", async () => {
    const value = `edge-secret-${randomBytes(8).toString("hex")}`;
    const created = await beta9("secret", "create", "EDGE_KEY", "--value", value);
    assert.equal(created.code, 0, created.stderr);
    const volume = new Volume({ name: "edge-data", mountPath: "/data" });
    const onMachine = async (node: Node) => {
      const sb = await new Sandbox({ image: null, client, pool: "edge", cpu: "250m", memory: 256, secrets: ["EDGE_KEY"], volumes: [volume] }).create();
      assert.equal((await sb.status()).workerId, node.machine!.machine.id);
      // Its hash, not the value: what a process prints may be kept in the logs, which are checked below.
      const seen = await sb.process.run("sh", ["-c", 'printf %s "$EDGE_KEY" | sha256sum']);
      assert.equal(seen.stdout.split(" ")[0], sha256(value), "the secret is in the container's environment");
      return sb;
    };
    // B is cordoned (above): A first, then only B.
    const a = await onMachine(A);
    await a.fs.writeText("/data/from-a.txt", "written on A");
    await a.terminate();
    await until("the volume's first commit", async () => (await client.volumes.get("edge-data")).version >= 1 || undefined);
    assert.equal((await beta9("machine", "cordon", A.machine!.machine.id)).code, 0);
    assert.equal((await beta9("machine", "uncordon", B.machine!.machine.id)).code, 0);
    try {
      const b = await onMachine(B);
      assert.equal(await b.fs.readText("/data/from-a.txt"), "written on A", "read on B what a container on A wrote");
      await b.terminate();
    } finally {
      assert.equal((await beta9("machine", "uncordon", A.machine!.machine.id)).code, 0);
      assert.equal((await beta9("machine", "cordon", B.machine!.machine.id)).code, 0);
    }
    // A task queue naming the secret: its handler sees it, its task and stub records never hold it.
    const app = join(dir, "edge-secret.ts");
    writeFileSync(app, `
      import { createHash } from "node:crypto";
      export const keyed = {
        __beta9Workload: true as const, kind: "taskqueue" as const, name: "edge-keyed",
        config: { cpu: 0.25, memory: "256Mi", keepWarmSeconds: 1, pool: "edge", secrets: ["EDGE_KEY"] },
        image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
        handler: async () => ({ sha256: createHash("sha256").update(process.env.EDGE_KEY ?? "").digest("hex") }),
      };
    `);
    const deployed = await beta9("deploy", `${app}:keyed`, "--json", "-q");
    assert.equal(deployed.code, 0, deployed.stderr);
    const done = await client.waitForTask(await client.putTask("edge-keyed", {}));
    assert.equal(done.status, "COMPLETE", JSON.stringify(done));
    assert.deepEqual(done.result, { sha256: sha256(value) });

    const shown = [
      JSON.stringify(done), JSON.stringify(await client.getStub(JSON.parse(deployed.stdout).stubId)),
      (await beta9("secret", "list", "--json")).stdout, (await beta9("sandbox", "list", "--json")).stdout,
      (await beta9("task", "list", "--json")).stdout, agentLog(A), agentLog(B),
      ...await Promise.all((await client.listContainers()).map(async (c) => (await beta9("container", "logs", c.id)).stdout)),
    ].join("\n");
    assert.ok(!shown.includes(value), "no answer, list or log shows the value");
    const stored = filesUnder(join(dir, "gw")).filter((f) => readFileSync(f).includes(value));
    assert.deepEqual(stored, [], "the gateway's data dir never holds the value in the clear (database, logs, objects)");
  });

  test("cut A's link: it goes silent and expires, its task in flight is retried on B; restored, A is ready again without a restart", async () => {
    const taskId = await client.putTask("edge-slow", { ms: 15_000 });
    const running = await until("task running on A", async () => {
      const t = await client.getTask(taskId);
      return t.status === "RUNNING" ? t : undefined;
    });
    const firstContainer = (await client.getContainer(running.containerId!)) as Container;
    assert.equal(firstContainer.workerId, A.machine!.machine.id);
    assert.equal((await beta9("machine", "uncordon", B.machine!.machine.id)).code, 0);
    const pid = A.agent!.pid;

    sh("ip", ["link", "set", A.veth, "down"]);
    const expired = await until("A expired", async () => {
      const m = await machineOf(A);
      return m?.state === "expired" ? m : undefined;
    });
    assert.equal(expired.workerConnected, false);
    const finished: Task = await until("task finished", async () => {
      const t = await client.getTask(taskId);
      return ["COMPLETE", "ERROR"].includes(t.status) ? t : undefined;
    });
    assert.equal(finished.status, "COMPLETE", JSON.stringify(finished));
    assert.ok(finished.retries >= 1, "the attempt on A was lost and retried");
    assert.equal((await client.getContainer(finished.containerId!)).workerId, B.machine!.machine.id, "the retry ran on B");
    assert.equal((await client.getContainer(firstContainer.id)).reason, "worker_lost");

    sh("ip", ["link", "set", A.veth, "up"]);
    await until("A ready again", async () => {
      const m = await machineOf(A);
      return m?.state === "ready" && m.workerConnected ? m : undefined;
    }).catch((err: Error) => assert.fail(`${err.message}\n${agentLog(A)}`));
    assert.equal(A.agent!.pid, pid);
    assert.equal(A.agent!.exitCode, null, "the same agent process reconnected");
  });

  test("drain B: its containers stop and the endpoint is served again, from A; delete B revokes it", async () => {
    const call = () => fetch(`${gateway.url}/endpoint/edge-echo`, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ n: 1 }),
    });
    assert.equal((await call()).status, 200);
    const drained = await beta9("machine", "drain", B.machine!.machine.id);
    assert.equal(drained.code, 0, drained.stderr);
    await until("B empty", async () => ((await machineOf(B))?.runningContainers === 0 ? true : undefined));
    assert.equal((await call()).status, 200);
    const active = (await client.listContainers({ active: true })).filter((c) => c.stubId === endpointStub || c.stubId === queueStub);
    assert.ok(active.length > 0 && active.every((c) => c.workerId === A.machine!.machine.id), JSON.stringify(active.map((c) => c.workerId)));
    const b = (await machineOf(B))!;
    assert.deepEqual([b.cordoned, b.draining], [true, true]);

    assert.equal((await beta9("machine", "delete", B.machine!.machine.id)).code, 0);
    assert.equal(await machineOf(B), undefined);
    const keepalive = await fetch(`${gateway.url}/api/v1/machine/keepalive`, {
      method: "POST", headers: { authorization: `Bearer ${B.machine!.token}`, "content-type": "application/json" },
      body: JSON.stringify({ cpuPercent: 0, memoryPercent: 0, diskPercent: 0, gpus: { total: 0, free: 0 }, containers: 0 }),
    });
    assert.equal(keepalive.status, 401);
    const workers = (await (await fetch(`${gateway.url}/api/v1/worker`, { headers: { authorization: `Bearer ${key}` } })).json()) as { items: { id: string }[] };
    assert.equal(workers.items.some((w) => w.id === B.machine!.machine.id), false);
  });
});
