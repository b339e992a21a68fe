/**
 * Volumes end to end on real parts: a gateway in its own process (so its memory can be measured),
 * two runc workers on this host (each with its own state dir, bridge and subnet, in pools of their
 * own so that a sandbox lands where the test says), sandboxes on the worker's own root filesystem
 * (no image to build), the SDK and the `beta9` CLI. Covered: a file written on worker A is read on
 * worker B; a second container on a worker reuses its snapshot; a deployed function's writes are
 * committed when its container ends; concurrent writers of one file leave one whole file;
 * `beta9 cp` of 100 MiB both ways with a sha256 match and the gateway's peak RSS growth bounded;
 * directories, rm, bad input and the quota through the CLI; changes kept on a worker while the
 * gateway is down and committed when the worker starts again.
 * Everything it makes is removed afterwards, even on failure. Skipped where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Client, Sandbox, Volume, type SandboxInstance } from "beta9";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState, ownedBy } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-volumes-e2e-"));
const QUOTA = 256 * 1024 * 1024;
const MiB = 1024 * 1024;
let gateway: ChildProcess | undefined;
let url: string;
let key: string;
let client: Client;
const workers: StartedWorker[] = [];
const opened: SandboxInstance[] = [];
const hostBefore = captureHostState();

function beta9(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, BETA9_GATEWAY: url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await beta9(...args);
  assert.equal(r.code, 0, `beta9 ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Polls until `probe` returns a value (bounded generously; never a timing assertion). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, limitMs = 120_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const data = new Volume({ name: "shared", mountPath: "/data" });

async function sandbox(pool: string, volumes = [data]): Promise<SandboxInstance> {
  const sb = await new Sandbox({ image: null, client, pool, cpu: "250m", memory: 256, volumes }).create();
  opened.push(sb);
  return sb;
}

async function terminate(sb: SandboxInstance): Promise<void> {
  await sb.terminate();
  opened.splice(opened.indexOf(sb), 1);
}

/** The volume's version once it has reached `atLeast` (each commit is one). */
const versionReaches = (name: string, atLeast: number) =>
  until(`volume ${name} at version ${atLeast}`, async () => {
    const v = await client.volumes.get(name);
    return v.version >= atLeast ? v.version : undefined;
  });

/** The gateway process's resident set now, and the peak since the last reset (KiB). */
function memory(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${gateway!.pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: field("VmRSS"), peak: field("VmHWM") };
}

function mountsUnder(path: string): string[] {
  return readFileSync("/proc/mounts", "utf8").split("\n").filter((line) => line.split(" ")[1]?.startsWith(path));
}

let workerKey: string;

/**
 * `beta9 gateway`, as an operator runs it, with a small volume quota for the quota case below; a
 * restart uses the same data dir and port. Resolves once it listens (its admin token: first start only).
 */
async function startGatewayProcess(): Promise<{ url: string; key?: string }> {
  const port = url ? new URL(url).port : "0";
  const child = spawn(process.execPath, [cli, "gateway", "--port", port, "--data-dir", join(dir, "gw"), "--log-level", "warn"], {
    env: { ...process.env, BETA9_QUOTA_VOLUME_BYTES: String(QUOTA), BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, stdio: ["ignore", "pipe", "inherit"],
  });
  gateway = child;
  return new Promise((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (c: Buffer) => {
      text += String(c);
      const listening = /^gateway: (http\S+)/m.exec(text)?.[1];
      if (listening) resolve({ url: listening, ...(/^admin token: (\S+)/m.test(text) && { key: /^admin token: (\S+)/m.exec(text)![1]! }) });
    });
    child.once("exit", (code) => reject(new Error(`the gateway exited (${code}): ${text}`)));
  });
}

async function stopGateway(signal: NodeJS.Signals): Promise<void> {
  if (!gateway || gateway.exitCode !== null || gateway.signalCode !== null) return;
  const exited = new Promise((r) => gateway!.once("exit", r));
  gateway.kill(signal);
  await exited;
}

/** Worker A or B: its own state dir, bridge, subnet and pool; the same ones again after a restart. */
async function startNode(letter: "a" | "b"): Promise<StartedWorker> {
  const worker = await startWorker({
    gatewayUrl: url, token: workerKey, stateDir: join(dir, `worker-${letter}`), logger: pino({ level: "silent" }), runtime: "runc",
    name: `vol${letter}`, subnet: `10.219.${letter === "a" ? 233 : 234}.0/24`, workerId: `volumes-e2e-${letter}`, pool: `vol-${letter}`,
  });
  await worker.connected;
  return worker;
}

describe("volumes across workers (gateway + two runc workers + SDK + CLI)", { skip }, () => {
  before(async () => {
    ({ url, key } = await startGatewayProcess() as { url: string; key: string });
    client = new Client({ gateway: url, token: key });
    workerKey = (await client.createToken({ type: "worker" })).key;
    for (const letter of ["a", "b"] as const) {
      await client.createPool({ name: `vol-${letter}` });
      workers.push(await startNode(letter));
    }
    await ok("volume", "create", "shared");
  });

  after(async () => {
    for (const sb of opened) await sb.terminate().catch(() => {});
    for (const w of workers) await w.close(1000).catch(() => {});
    await client?.close();
    await stopGateway("SIGTERM");
    const left = mountsUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], "no volume mount outlives the test");
    const mine = (state: ReturnType<typeof captureHostState>) => ownedBy(state, ["vola", "volb"], [dir]);
    assert.deepEqual(mine(captureHostState()), mine(hostBefore), "netns, veths, bridges, mounts, cgroups and rules are all gone");
  });

  test("a file written by a container on worker A is read by a container on worker B; B's changes reach the next one", async () => {
    const a = await sandbox("vol-a");
    assert.equal((await a.status()).workerId, "volumes-e2e-a");
    await a.fs.writeText("/data/hello.txt", "written on A");
    assert.equal((await a.process.run("sh", ["-c", "mkdir -p /data/deep/er && echo nested > /data/deep/er/n.txt && chmod 600 /data/deep/er/n.txt"])).exitCode, 0);
    await terminate(a);
    await versionReaches("shared", 1);

    const b = await sandbox("vol-b");
    assert.equal((await b.status()).workerId, "volumes-e2e-b");
    assert.equal(await b.fs.readText("/data/hello.txt"), "written on A");
    assert.equal((await b.process.run("stat", ["-c", "%a", "/data/deep/er/n.txt"])).stdout.trim(), "600", "mode travels with the file");
    await b.process.run("sh", ["-c", "rm /data/hello.txt && echo from B > /data/from-b.txt"]);
    await terminate(b);
    const version = await versionReaches("shared", 2);

    const listed = JSON.parse(await ok("ls", "shared", "-r", "--json")) as { path: string }[];
    assert.deepEqual(listed.map((e) => e.path).sort(), ["deep/er/n.txt", "from-b.txt"]);
    const again = await sandbox("vol-a");
    assert.equal(await again.fs.readText("/data/from-b.txt"), "from B\n");
    assert.equal((await again.process.run("test", ["-e", "/data/hello.txt"])).exitCode, 1, "a removal on B is a removal on A");
    await terminate(again);
    assert.equal((await client.volumes.get("shared")).version, version, "a container that changed nothing commits nothing");
  });

  test("a second container on the same worker reuses the worker's snapshot (nothing copied again)", async () => {
    const ws = (await client.request<{ id: string }>("GET", "/workspace/current")).id;
    const cache = join(dir, "worker-b", "volumes", "cache", ws, "shared");
    const first = await sandbox("vol-b");
    const snapshots = readdirSync(cache).filter((n) => !n.endsWith(".json"));
    const inode = statSync(join(cache, snapshots.at(-1)!, "from-b.txt")).ino;
    const second = await sandbox("vol-b");
    assert.equal(await second.fs.readText("/data/from-b.txt"), "from B\n");
    assert.deepEqual(readdirSync(cache).filter((n) => !n.endsWith(".json")), snapshots, "no second snapshot");
    assert.equal(statSync(join(cache, snapshots.at(-1)!, "from-b.txt")).ino, inode, "the same file, not a new copy");
    await terminate(first);
    await terminate(second);
  });

  test("a deployed function mounts the volume as well; what it writes is committed when its container ends", async () => {
    const root = join(dir, "fn-app");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(root, "app.ts"), `
      import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
      import { fn, Image, Volume } from ${JSON.stringify(sdk)};
      export const writer = fn({ name: "vol-writer", image: Image.scratch(), cpu: 0.25, memory: "128Mi", pool: "vol-a",
        volumes: [new Volume({ name: "shared", mountPath: "/data" })] }, async (input: { text: string }) => {
        mkdirSync("/data/fn", { recursive: true });
        writeFileSync("/data/fn/out.txt", input.text);
        return { fromB: readFileSync("/data/from-b.txt", "utf8") };
      });
    `);
    await ok("deploy", `${join(root, "app.ts")}:writer`, "-q");
    const before = (await client.volumes.get("shared")).version;
    assert.deepEqual(await client.callFunction({ name: "vol-writer" }, { text: "from a function" }), { fromB: "from B\n" });
    // Its container ends when the deployment stops; that is when its changes are committed.
    const [deployment] = await client.listDeployments({ name: "vol-writer" });
    await client.stopDeployment(deployment!.id);
    await versionReaches("shared", before + 1);
    const out = join(dir, "fn-out.txt");
    await ok("cp", "shared:fn/out.txt", out);
    assert.equal(readFileSync(out, "utf8"), "from a function");
  });

  test("two containers on two workers write one file at once: the volume holds one writer's whole file", async () => {
    const before = (await client.volumes.get("shared")).version;
    const writers = await Promise.all([sandbox("vol-a"), sandbox("vol-b")]);
    const written = await Promise.all(writers.map(async (sb) => {
      const r = await sb.process.run("sh", ["-c", "head -c 8388608 /dev/urandom > /data/same.bin && sha256sum /data/same.bin"]);
      assert.equal(r.exitCode, 0, r.stderr);
      return r.stdout.split(" ")[0]!;
    }));
    assert.notEqual(written[0], written[1]);
    await Promise.all(writers.map(terminate));
    await versionReaches("shared", before + 2);
    const local = join(dir, "same.bin");
    await ok("cp", "shared:same.bin", local);
    assert.equal(statSync(local).size, 8 * MiB);
    assert.ok(written.includes(await sha256File(local)), "the file is exactly one writer's bytes");
  });

  test("beta9 cp of 100 MiB round-trips with a matching sha256; the gateway's peak RSS grows far less than the file", async (t) => {
    const big = join(dir, "big.bin");
    const out = createWriteStream(big);
    for (let i = 0; i < 100; i++) {
      const chunk = createHash("sha512").update(String(i)).digest();
      if (!out.write(Buffer.alloc(MiB, chunk))) await new Promise<void>((r) => out.once("drain", () => r()));
    }
    await new Promise<void>((r) => out.end(() => r()));
    writeFileSync(`/proc/${gateway!.pid}/clear_refs`, "5"); // resets VmHWM to the current RSS
    const start = memory();
    assert.match(await ok("cp", big, "shared:blobs/"), /copied 1 file \(100\.0 MiB\) to shared:blobs\/big\.bin/);
    const back = join(dir, "big.back");
    await ok("cp", "shared:blobs/big.bin", back);
    const end = memory();
    assert.equal(await sha256File(back), await sha256File(big));
    const growthMiB = (end.peak - start.rss) / 1024;
    t.diagnostic(`gateway RSS ${Math.round(start.rss / 1024)} MiB before, peak ${Math.round(end.peak / 1024)} MiB during a 100 MiB upload and download`);
    assert.ok(growthMiB < 64, `the gateway's peak RSS grew ${growthMiB.toFixed(1)} MiB moving a 100 MiB file: it must stream, not buffer`);
  });

  test("directories copy recursively both ways; rm removes files and, with -r, directories", async () => {
    const tree = join(dir, "tree");
    mkdirSync(join(tree, "sub", "deeper"), { recursive: true });
    writeFileSync(join(tree, "top.txt"), "top");
    writeFileSync(join(tree, "sub", "deeper", "leaf.txt"), "leaf");
    assert.match(await ok("cp", tree, "shared:"), /copied 2 files/);
    assert.deepEqual((JSON.parse(await ok("ls", "shared:tree", "-r", "--json")) as { path: string }[]).map((e) => e.path), ["tree/sub/deeper/leaf.txt", "tree/top.txt"]);
    const back = join(dir, "tree-back");
    await ok("cp", "shared:tree", back);
    assert.equal(readFileSync(join(back, "sub", "deeper", "leaf.txt"), "utf8"), "leaf");
    assert.match(await ok("rm", "shared:tree/top.txt"), /removed 1 file/);
    const dirRm = await beta9("rm", "shared:tree");
    assert.equal(dirRm.code, 1, dirRm.stderr);
    assert.match(dirRm.stderr, /is a directory that is not empty; remove it with recursive=true \(beta9 rm -r\)/);
    assert.match(await ok("rm", "-r", "shared:tree"), /removed 1 file/);
    assert.match(await ok("volume", "list"), /shared/);
  });

  test("changes the gateway cannot take are kept on the worker and committed later (gateway killed, worker restarted)", async () => {
    const before = (await client.volumes.get("shared")).version;
    const sb = await sandbox("vol-a");
    await sb.fs.writeText("/data/survivor.txt", "kept through a gateway outage");
    await stopGateway("SIGKILL");
    opened.splice(opened.indexOf(sb), 1); // it ends with its worker, below
    // The worker stops its container while the gateway is gone: the commit cannot be made, so it waits on the worker's disk.
    await workers[0]!.close(1000);
    const waiting = join(dir, "worker-a", "volumes", "containers");
    assert.equal(readdirSync(waiting).length, 1, "the container's changes are kept");
    assert.deepEqual(mountsUnder(waiting), [], "but nothing stays mounted");
    await startGatewayProcess();
    workers[0] = await startNode("a");
    await versionReaches("shared", before + 1);
    const out = join(dir, "survivor.txt");
    await ok("cp", "shared:survivor.txt", out);
    assert.equal(readFileSync(out, "utf8"), "kept through a gateway outage");
    await until("the kept changes cleaned up", async () => (readdirSync(waiting).length === 0 ? true : undefined));
  });

  test("bad input: a name with '/', paths escaping the volume, unknown volumes; the quota is a 429 with what to do", async () => {
    const slash = await beta9("ls", "a/b:x");
    assert.equal(slash.code, 2);
    assert.match(slash.stderr, /error: USAGE: volume name "a\/b" is not valid \('\/' is not allowed/);
    for (const target of ["shared:../x", "shared:a/../../x"]) {
      const r = await beta9("cp", join(dir, "same.bin"), target);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /contains '\.\.'; a path cannot leave the volume/);
    }
    const absolute = await beta9("rm", "shared:/etc/passwd");
    assert.equal(absolute.code, 2);
    assert.match(absolute.stderr, /is absolute; paths are relative to the volume's root/);
    const unknown = await beta9("ls", "nope");
    assert.equal(unknown.code, 4);
    assert.match(unknown.stderr, /error: VOLUME_NOT_FOUND: No volume nope in this workspace; create it with `beta9 volume create nope`/);
    const huge = join(dir, "huge.bin");
    writeFileSync(huge, "");
    truncateSync(huge, 200 * MiB); // sparse: nothing to write, but 200 MiB to send
    const over = await beta9("cp", huge, "shared:huge.bin");
    assert.equal(over.code, 1, over.stderr);
    assert.match(over.stderr, /error: QUOTA_EXCEEDED: This workspace has \d+ bytes of volume contents, the most it may have \(268435456\); this upload \(209715200 bytes\) does not fit: remove files/);
    assert.equal(existsSync(join(dir, "gw", "objects", "volumes", "tmp")) ? readdirSync(join(dir, "gw", "objects", "volumes", "tmp")).length : 0, 0, "nothing of the refused upload is kept");
    const chunks = readdirSync(join(dir, "gw", "objects", "volumes"), { recursive: true }).map(String).filter((p) => p.includes("chunks/") && /[a-f0-9]{64}$/.test(p));
    assert.deepEqual(chunks, [], "refused before any chunk was sent");
  });
  test("symlinks and empty directories a container makes reach a container on the other worker; a link to a host path stays a harmless link", async () => {
    const before = (await client.volumes.get("shared")).version;
    const a = await sandbox("vol-a");
    const made = await a.process.run("sh", ["-c", [
      "mkdir -p /data/links /data/emptydir/inner", "chmod 700 /data/emptydir/inner", "echo target > /data/links/t.txt",
      "ln -s t.txt /data/links/rel", "ln -s /etc/shadow /data/links/shadow", "ln -s ../../../../../../etc /data/links/up",
    ].join(" && ")]);
    assert.equal(made.exitCode, 0, made.stderr);
    await terminate(a);
    await versionReaches("shared", before + 1);
    const listed = JSON.parse(await ok("ls", "shared:links", "--json")) as { path: string; type: string; target?: string }[];
    assert.deepEqual(listed.filter((e) => e.type === "link").map((e) => [e.path, e.target]), [["links/rel", "t.txt"], ["links/shadow", "/etc/shadow"], ["links/up", "../../../../../../etc"]]);
    // No path on the worker or the gateway resolved through them: the snapshots hold links, the gateway none.
    const ws = (await client.request<{ id: string }>("GET", "/workspace/current")).id;
    const b = await sandbox("vol-b");
    const seen = await b.process.run("sh", ["-c", "readlink /data/links/rel /data/links/shadow /data/links/up && cat /data/links/rel && stat -c %a /data/emptydir/inner && ls -A /data/emptydir/inner | wc -l"]);
    assert.equal(seen.exitCode, 0, seen.stderr);
    assert.deepEqual(seen.stdout.trim().split("\n"), ["t.txt", "/etc/shadow", "../../../../../../etc", "target", "700", "0"]);
    const snapshots = join(dir, "worker-b", "volumes", "cache", ws, "shared");
    const version = (n: string) => Number(/-v(\d+)$/.exec(n)?.[1] ?? -1);
    const newest = readdirSync(snapshots).filter((n) => !n.endsWith(".json")).sort((x, y) => version(x) - version(y)).at(-1)!;
    assert.equal(readlinkSync(join(snapshots, newest, "links", "shadow")), "/etc/shadow", "the worker's snapshot holds the link itself");
    await terminate(b);
  });
});
