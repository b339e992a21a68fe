/**
 * Workloads end to end on real parts (gateway, runc workers as child processes, the `beta9` CLI):
 * `beta9 serve` hot reload and clean exit; a task whose worker is killed with -9 is retried and
 * completes; a seconds-level schedule fires once per tick across a gateway restart. Skipped (with
 * the reason) where runc cannot run. Timings are printed as diagnostics, never asserted.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, type Task } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason } from "@beta9/worker";
import { captureHostState } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-wl-e2e-"));
const children = new Set<ChildProcess>();
const hostBefore = captureHostState();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** A `beta9` child process against `gateway`; its output accumulates in `out`. */
function beta9(gateway: { url: string; key: string }, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number> } {
  let text = "";
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: gateway.key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.stdout!.on("data", (d) => (text += String(d)));
  child.stderr!.on("data", (d) => (text += String(d)));
  const exited = new Promise<number>((r) => child.once("exit", (code, signal) => {
    children.delete(child);
    r(code ?? (signal ? 128 : 1));
  }));
  return { child, out: () => text, exited };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, context?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `\n${context()}` : ""}`);
    await sleep(25);
  }
}

/** A project directory with a package.json, so its .ts files load as ES modules. */
function project(name: string, files: Record<string, string>): string {
  const root = join(dir, name);
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
  for (const [file, text] of Object.entries(files)) writeFileSync(join(root, file), text);
  return root;
}

describe("workloads end to end (gateway + runc workers + CLI)", { skip }, () => {
  let gateway: RunningGateway;
  let client: Client;
  let key: string;
  let worker: ReturnType<typeof beta9> | undefined;
  let workerToken: string;
  const workerArgs = (id: string, pool: string, subnet: string) => [
    "worker", "--gateway", gateway.url, "--token", workerToken, "--state-dir", join(dir, `worker-${id}`), "--name", id.replace(/[^a-z0-9]/g, "").slice(0, 8),
    "--subnet", subnet, "--id", id, "--pool", pool, "--runtime", "runc", "--log-level", "error",
  ];
  const startWorkerProcess = async (id: string, pool: string, subnet: string) => {
    const w = beta9({ url: gateway.url, key }, workerArgs(id, pool, subnet));
    await until(`worker ${id} connected`, async () => ((await client.listWorkers()).some((x) => x.id === id && x.connected) ? true : undefined));
    return w;
  };

  before(async () => {
    // Sessions of a killed `beta9 serve` end after 8 s without heartbeats (15 s by default).
    process.env.BETA9_SERVE_HEARTBEAT_TIMEOUT_MS = "8000";
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    key = gateway.bootstrap!.token.key;
    client = new Client({ gateway: gateway.url, token: key });
    workerToken = (await client.createToken({ type: "worker" })).key;
    worker = await startWorkerProcess("wl-main", "default", "10.223.42.0/24");
  });

  after(async () => {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all([...children].map((c) => new Promise((r) => c.once("exit", r))));
    await client?.close();
    await gateway?.close();
  });

  test("beta9 serve: one container, logs streamed, an edit answers within a reload, Ctrl-C leaves no container", async () => {
    const root = project("serve-app", {
      "greeting.ts": 'export const greeting = "first";\n',
      "app.ts": `
        import { endpoint, Image } from ${JSON.stringify(sdk)};
        import { greeting } from "./greeting.ts";
        export const dev = endpoint({ name: "dev", image: Image.scratch(), cpu: 1, memory: "128Mi" }, async () => {
          console.log("serving " + greeting);
          return { says: greeting };
        });
      `,
    });
    const serve = beta9({ url: gateway.url, key }, ["serve", join(root, "app.ts") + ":dev", "-q"]);
    const url = await until("the serve URL", () => /serving (http\S+)/.exec(serve.out())?.[1], 60_000, serve.out);
    const call = async () => {
      const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
      return res.status === 200 ? ((await res.json()) as { says: string }).says : `HTTP ${res.status}`;
    };
    assert.equal(await call(), "first");
    await until("the handler's log line", () => (serve.out().includes("out serving first") ? true : undefined));
    const session = url.split("/").pop()!;
    const stubsSeen = new Set([(await client.getServeSession(session)).stubId]);
    const serving = async () => (await client.listContainers({ active: true })).filter((c) => c.stubId && stubsSeen.has(c.stubId) && c.state === "RUNNING");
    assert.equal((await serving()).length, 1);
    assert.equal((await client.listDeployments()).filter((d) => d.name === "dev").length, 0, "a serve copy is no deployment");

    for (const version of ["second", "third"]) {
      const edited = Date.now();
      writeFileSync(join(root, "greeting.ts"), `export const greeting = ${JSON.stringify(version)};\n`);
      await until(`the answer ${version}`, async () => ((await call()) === version ? true : undefined));
      const ms = Date.now() - edited;
      process.stdout.write(`# hot reload: edit → new code answering in ${ms} ms\n`);
      stubsSeen.add((await client.getServeSession(session)).stubId);
      // The old container stops once the new one answers: exactly one serves again.
      await until("one container again", async () => ((await serving()).length === 1 ? true : undefined));
    }
    assert.match(serve.out(), /reloaded in \d+ ms/);

    serve.child.kill("SIGINT");
    assert.equal(await serve.exited, 0, serve.out());
    await until("no serve container left", async () => ((await client.listContainers({ active: true })).some((c) => c.stubId && stubsSeen.has(c.stubId)) ? undefined : true), 30_000);
    assert.equal((await fetch(url, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" })).status, 404);
  });

  test("beta9 serve killed with -9: the gateway ends the session when its heartbeats stop, and the container goes", async () => {
    const root = join(dir, "serve-app"); // written by the test above
    const serve = beta9({ url: gateway.url, key }, ["serve", join(root, "app.ts") + ":dev", "-q", "--no-watch"]);
    const url = await until("the serve URL", () => /serving (http\S+)/.exec(serve.out())?.[1], 60_000, serve.out);
    const session = await client.getServeSession(url.split("/").pop()!);
    assert.ok(session.containerId);
    serve.child.kill("SIGKILL");
    await serve.exited;
    const gone = Date.now();
    await until("the session's container gone", async () => ((await client.listContainers({ active: true })).some((c) => c.id === session.containerId) ? undefined : true), 60_000);
    process.stdout.write(`# serve killed -9: its container gone ${Date.now() - gone} ms later (heartbeat timeout ${process.env.BETA9_SERVE_HEARTBEAT_TIMEOUT_MS} ms)\n`);
    await assert.rejects(client.getServeSession(session.id), (err: Error & { status?: number }) => err.status === 404);
  });

  test("deploy() and serve() from code do what beta9 deploy and beta9 serve do", async () => {
    const root = join(dir, "serve-app"); // written by the test above
    const { tsImport } = await import("tsx/esm/api");
    const { dev } = (await tsImport(join(root, "app.ts"), import.meta.url)) as { dev: { deploy(o: unknown): Promise<{ name: string; version: number; url: string }>; serve(o: unknown): Promise<{ url: string; stop(): Promise<void> }> } };
    const deployed = await dev.deploy({ client });
    assert.equal(deployed.name, "dev");
    assert.equal(deployed.version, 1);
    assert.equal(deployed.url, `${gateway.url}/endpoint/dev/v1`);
    const post = (url: string) => fetch(url, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
    const first = await post(deployed.url);
    const containers = async () => JSON.stringify((await client.listContainers()).map((c) => [c.id.slice(0, 8), c.stubId?.slice(0, 8), c.state, c.reason, c.message]));
    const body = await first.text();
    assert.equal(first.status, 200, `${body} ${first.status === 200 ? "" : await containers()}`);
    assert.deepEqual(JSON.parse(body), { says: "third" });
    const served = await dev.serve({ client, watch: false });
    assert.deepEqual(await (await post(served.url)).json(), { says: "third" });
    const session = served.url.split("/").pop()!;
    const stubId = (await client.getServeSession(session)).stubId;
    await served.stop();
    await until("the served container gone", async () => ((await client.listContainers({ active: true })).some((c) => c.stubId === stubId) ? undefined : true), 30_000);
    const dep = (await client.listDeployments({ name: "dev" }))[0]!;
    await client.stopDeployment(dep.id);
  });

  test("a task whose worker is killed with -9 mid-run is RETRY, then completes on the restarted worker", async () => {
    const root = project("retry-app", {
      "app.ts": `
        import { hostname } from "node:os";
        import { taskQueue, Image, TaskPolicy } from ${JSON.stringify(sdk)};
        export const survivor = taskQueue(
          { name: "survivor", image: Image.scratch(), cpu: 0.25, memory: "128Mi", pool: "retrypool", taskPolicy: new TaskPolicy({ maxRetries: 2, timeout: 120 }) },
          // Runs until a wall-clock time: long enough for the first attempt to be cut off, short for the retry.
          async (input: { until: number }) => {
            await new Promise((r) => setTimeout(r, Math.max(0, input.until - Date.now())));
            return { done: true, host: hostname() };
          },
        );
      `,
    });
    let w1 = await startWorkerProcess("wl-retry", "retrypool", "10.223.43.0/24");
    let killed = false;
    try {
      const deployed = beta9({ url: gateway.url, key }, ["deploy", join(root, "app.ts") + ":survivor", "-q"]);
      assert.equal(await deployed.exited, 0, deployed.out());
      // The worker is killed about a second in; the gateway gives it up after 3 s without keepalives.
      const task = await client.putTask("survivor", { until: Date.now() + 12_000 });
      // Every state the task goes through, from its SSE stream.
      const states: string[] = [];
      const watching = (async () => {
        const res = await fetch(`${gateway.url}/api/v1/task/${task.id}/subscribe`, { headers: { authorization: `Bearer ${key}` } });
        let buffer = "";
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += Buffer.from(chunk).toString();
          for (const m of buffer.matchAll(/data: (\{.*\})\n/g)) {
            const status = (JSON.parse(m[1]!) as Task).status;
            if (states.at(-1) !== status) states.push(status);
          }
          buffer = buffer.slice(buffer.lastIndexOf("\n\n") + 2);
        }
      })();
      const first = await until("the first attempt running", async () => {
        const t = await task.status();
        return t.status === "RUNNING" ? t : undefined;
      });
      const lostContainer = first.containerId!;
      w1.child.kill("SIGKILL");
      await w1.exited;
      killed = true;
      const retrying = await until("RETRY", async () => {
        const t = await task.status();
        return t.status === "RETRY" ? t : undefined;
      });
      assert.equal(retrying.retries, 1);
      assert.match(retrying.error ?? "", /container was lost/);
      assert.ok(retrying.nextAttemptAt, "RETRY says when the next attempt may start");
      const listed = beta9({ url: gateway.url, key }, ["task", "list"]);
      assert.equal(await listed.exited, 0);
      assert.match(listed.out(), new RegExp(`${task.id}\\s+survivor\\s+RETRY 1/2`));
      w1 = await startWorkerProcess("wl-retry", "retrypool", "10.223.43.0/24");
      killed = false;
      const result = await task.result();
      assert.equal((result as { done: boolean }).done, true);
      const final = await task.status();
      assert.deepEqual([final.status, final.retries], ["COMPLETE", 1]);
      assert.notEqual(final.containerId, lostContainer, "the retry ran in a new container");
      await watching;
      assert.deepEqual(states.filter((s) => s !== "PENDING"), ["RUNNING", "RETRY", "RUNNING", "COMPLETE"], states.join(" → "));
    } finally {
      // A worker restarted on the killed one's state dir removes what it left (container, mounts, netns…).
      if (killed) w1 = await startWorkerProcess("wl-retry", "retrypool", "10.223.43.0/24");
      w1.child.kill("SIGTERM");
      await w1.exited;
    }
  });

  test("a worker killed with -9 and restarted resumes its queue at once: same id from its state dir, reconciled, no wait for the worker timeout", async () => {
    // A gateway that would wait 10 minutes for a silent worker: only reconciliation can finish this test in time.
    const patient = await startGateway({ dataDir: join(dir, "gw-patient"), port: 0, logLevel: "silent", workerTimeoutMs: 600_000 });
    const patientKey = patient.bootstrap!.token.key;
    const patientClient = new Client({ gateway: patient.url, token: patientKey });
    const token = (await patientClient.createToken({ type: "worker" })).key;
    const args = ["worker", "--gateway", patient.url, "--token", token, "--state-dir", join(dir, "worker-restart"), "--name", "wlrst",
      "--subnet", "10.223.45.0/24", "--pool", "default", "--runtime", "runc", "--log-level", "error"];
    const connectedIds = async () => (await patientClient.listWorkers()).filter((w) => w.connected).map((w) => w.id);
    const start = async () => {
      const w = beta9({ url: patient.url, key: patientKey }, args);
      await until("the worker connected", async () => ((await connectedIds()).length === 1 ? true : undefined), 60_000, w.out);
      return w;
    };
    let w = await start();
    try {
      const [firstId] = await connectedIds();
      const root = project("resume-app", {
        "app.ts": `
          import { taskQueue, Image, TaskPolicy } from ${JSON.stringify(sdk)};
          export const resumer = taskQueue(
            { name: "resumer", image: Image.scratch(), cpu: 0.25, memory: "128Mi", taskPolicy: new TaskPolicy({ maxRetries: 5, timeout: 120 }) },
            async (input: { until: number }) => {
              await new Promise((r) => setTimeout(r, Math.max(0, input.until - Date.now())));
              return { done: true };
            },
          );
        `,
      });
      const deployed = beta9({ url: patient.url, key: patientKey }, ["deploy", join(root, "app.ts") + ":resumer", "-q"]);
      assert.equal(await deployed.exited, 0, deployed.out());
      const task = await patientClient.putTask("resumer", { until: Date.now() + 4_000 });
      await until("the first attempt running", async () => ((await task.status()).status === "RUNNING" ? true : undefined));
      w.child.kill("SIGKILL");
      await w.exited;
      w = await start();
      assert.deepEqual(await connectedIds(), [firstId], "the restarted worker kept its id");
      assert.equal((await patientClient.listWorkers()).length, 1, "no second worker record");
      const final = await until("the retry COMPLETE", async () => {
        const t = await task.status();
        return t.status === "COMPLETE" ? t : undefined;
      }, 90_000);
      // The cut-off attempt counts; one sent to the dead container before the restart was seen counts too.
      assert.ok(final.retries >= 1, `retries ${final.retries}`);
    } finally {
      w.child.kill("SIGTERM");
      await w.exited;
      await patientClient.close();
      await patient.close();
    }
  });

  test("put on a queue that is not deployed says to deploy it first", async () => {
    await assert.rejects(client.putTask("never-deployed", {}), (err: Error & { code?: string }) => {
      assert.equal(err.code, "WORKLOAD_NOT_DEPLOYED");
      assert.match(err.message, /task queue never-deployed has no active deployment; deploy it first/);
      return true;
    });
  });

  test("undeployed workloads run from code: put, remote and map go to stubs of their code that no deployment lists; map rides out 429s", async () => {
    const root = project("undeployed-app", {
      "app.ts": `
        import { endpoint, fn, Image, taskQueue } from ${JSON.stringify(sdk)};
        const small = { image: Image.scratch(), cpu: 0.25, memory: "128Mi", keepWarmSeconds: 30 };
        export const cube = fn({ name: "cube", ...small, maxPendingTasks: 2 }, async (n: number) => n ** 3);
        export const shout = taskQueue({ name: "shout", ...small }, async (input: { text: string }) => input.text.toUpperCase());
        export const hi = endpoint({ name: "hi", ...small }, async () => "hi");
      `,
    });
    type Callable = { remote(i: unknown, o: unknown): Promise<unknown>; put(i: unknown, o: unknown): Promise<{ result(): Promise<unknown> }>; map(i: unknown[], o: unknown): AsyncIterable<unknown> };
    const { tsImport } = await import("tsx/esm/api");
    const app = (await tsImport(join(root, "app.ts"), import.meta.url)) as Record<"cube" | "shout" | "hi", Callable>;
    const names = new Set(["cube", "shout", "hi"]);
    const ours = async () => new Set((await client.listStubs({ limit: 1000 })).filter((s) => names.has(s.name)).map((s) => s.id));
    try {
      assert.equal(await (await app.shout.put({ text: "queued" }, { client })).result(), "QUEUED");
      assert.equal(await app.hi.remote({}, { client }), "hi");
      // Twice the queue's bound through map, and one more call competing for its two places: the
      // gateway refuses some (429, Retry-After); every one still completes, the map in input order.
      const inputs = [1, 2, 3, 4, 5, 6, 7, 8];
      const mapped = (async () => {
        const out: unknown[] = [];
        for await (const r of app.cube.map(inputs, { client, concurrency: inputs.length })) out.push(r);
        return out;
      })();
      const [out, single] = await Promise.all([mapped, app.cube.remote(10, { client })]);
      assert.deepEqual(out, inputs.map((n) => n ** 3));
      assert.equal(single, 1000);
      const stubs = (await client.listStubs({ limit: 1000 })).filter((s) => names.has(s.name));
      assert.deepEqual(stubs.map((s) => s.type).sort(), ["endpoint/serve", "function/serve", "taskqueue/serve"], "one stub each, none deployable");
      assert.deepEqual((await client.listDeployments()).filter((d) => names.has(d.name)), [], "no deployment was made");
      const tasks = (await client.listTasks({ limit: 1000 })).filter((t) => stubs.some((s) => s.id === t.stubId));
      assert.equal(tasks.length, 1 + inputs.length + 1, "each call one task, none of the refused ones");
      assert.ok(tasks.every((t) => t.status === "COMPLETE"));
    } finally {
      const stubIds = await ours();
      for (const c of await client.listContainers({ active: true })) if (c.stubId && stubIds.has(c.stubId)) await client.stopContainer(c.id).catch(() => undefined);
      await until("the undeployed workloads' containers gone", async () => ((await client.listContainers({ active: true })).some((c) => c.stubId && stubIds.has(c.stubId)) ? undefined : true), 30_000);
    }
  });

  test("a schedule every 2 s fires once per tick, also across a gateway restart", async () => {
    // A gateway of its own, on a fixed port, so its worker reconnects to the restarted one.
    const port = await freePort();
    const dataDir = join(dir, "gw-cron");
    let g2 = await startGateway({ dataDir, port, logLevel: "silent", workerTimeoutMs: 3000 });
    const key2 = g2.bootstrap!.token.key;
    const c2 = new Client({ gateway: g2.url, token: key2 });
    const token2 = (await c2.createToken({ type: "worker" })).key;
    const w = beta9({ url: g2.url, key: key2 }, [
      "worker", "--gateway", g2.url, "--token", token2, "--state-dir", join(dir, "worker-cron"), "--name", "wlcron",
      "--subnet", "10.223.44.0/24", "--id", "wl-cron", "--runtime", "runc", "--log-level", "error",
    ]);
    try {
      await until("cron worker connected", async () => ((await c2.listWorkers()).some((x) => x.connected) ? true : undefined));
      const root = project("cron-app", {
        "app.ts": `
          import { schedule, Image } from ${JSON.stringify(sdk)};
          export const tick = schedule({ name: "tick", when: "*/2 * * * * *", image: Image.scratch(), cpu: 0.25, memory: "128Mi", keepWarmSeconds: 60 },
            async (input: { scheduledAt: string }) => ({ at: input.scheduledAt }));
        `,
      });
      const deployed = beta9({ url: g2.url, key: key2 }, ["deploy", join(root, "app.ts") + ":tick", "-q"]);
      assert.equal(await deployed.exited, 0, deployed.out());
      const tasks = async () => (await c2.listTasks({ limit: 1000 }));
      await until("3 ticks before the restart", async () => ((await tasks()).length >= 3 ? true : undefined));
      await g2.close();
      await sleep(3000); // at least one tick passes while no gateway runs
      g2 = await startGateway({ dataDir, port, logLevel: "silent", workerTimeoutMs: 3000 });
      const before = (await tasks()).length;
      await until("3 ticks after the restart", async () => ((await tasks()).length >= before + 3 ? true : undefined));
      const dep = (await c2.listDeployments({ name: "tick" }))[0]!;
      await c2.stopDeployment(dep.id);
      const ended = await until("every run ended", async () => {
        const list = await tasks();
        return list.every((t) => ["COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"].includes(t.status)) ? list : undefined;
      });
      const ticks = ended.filter((t) => t.status === "COMPLETE").map((t) => (t.result as { at: string }).at).sort();
      process.stdout.write(`# schedule: ${ended.length} runs, ${ticks.length} complete: ${ticks.map((t) => t.slice(17, 19)).join(" ")}\n`);
      assert.equal(new Set(ticks).size, ticks.length, `a tick ran twice: ${ticks.join(", ")}`);
      assert.equal(ticks.length, ended.length, JSON.stringify(ended.filter((t) => t.status !== "COMPLETE")));
      for (const at of ticks) assert.equal(new Date(at).getUTCSeconds() % 2, 0, `${at} is no tick of */2`);
      assert.ok(ended.length >= 6);
    } finally {
      w.child.kill("SIGTERM");
      await w.exited;
      await c2.close();
      await g2.close();
    }
  });
});

test("after the workload tests, the host holds no container, mount, netns or veth of theirs", { skip }, () => {
  const now = captureHostState();
  const ours = (xs: string[]) => xs.filter((x) => x.includes("wl") || x.includes(dir));
  assert.deepEqual(
    { netns: ours(now.netns), veths: ours(now.veths), mounts: ours(now.overlayMounts), cgroups: ours(now.cgroupDirs) },
    { netns: ours(hostBefore.netns), veths: ours(hostBefore.veths), mounts: ours(hostBefore.overlayMounts), cgroups: ours(hostBefore.cgroupDirs) },
  );
  rmSync(dir, { recursive: true, force: true });
});
