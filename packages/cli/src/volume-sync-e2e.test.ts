/**
 * `volume.commit()` and `volume.reload()` mid-run, on real parts: a `beta9 gateway` process, one
 * runc worker, sandboxes on the worker's root filesystem that mount one volume, and the SDKs' own
 * sync modules (TypeScript's volume-sync.js, Python's volume_sync.py: built-ins only, copied into
 * the container as they are) talking to the worker over the control socket it binds in.
 * Covered: a commit is visible to `ls` and to a running container's reload before anyone exits;
 * nothing is sent twice (an exit after a commit does not undo a newer writer); a removal of a
 * committed file; local uncommitted changes survive a reload; concurrent commits of distinct
 * files lose nothing and of one file leave one whole file; a volume the container does not mount
 * is refused. Everything it makes is removed afterwards, even on failure. Skipped where runc cannot run.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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
const tsSync = readFileSync(fileURLToPath(new URL("../../sdk/dist/volume-sync.js", import.meta.url)), "utf8");
const pySync = readFileSync(fileURLToPath(new URL("../../../sdk/python/beta9/volume_sync.py", import.meta.url)), "utf8");
const dir = mkdtempSync(join(tmpdir(), "beta9-volume-sync-e2e-"));
let gateway: ChildProcess | undefined;
let client: Client;
let worker: StartedWorker | undefined;
const opened: SandboxInstance[] = [];
const hostBefore = captureHostState();
const vol = new Volume({ name: "sync", mountPath: "/data" });

async function startGateway(): Promise<{ url: string; key: string }> {
  const child = spawn(process.execPath, [cli, "gateway", "--port", "0", "--data-dir", join(dir, "gw"), "--log-level", "warn"], {
    env: { ...process.env, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, stdio: ["ignore", "pipe", "inherit"],
  });
  gateway = child;
  return new Promise((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (c: Buffer) => {
      text += String(c);
      const url = /^gateway: (http\S+)/m.exec(text)?.[1];
      const key = /^admin token: (\S+)/m.exec(text)?.[1];
      if (url && key) resolve({ url, key });
    });
    child.once("exit", (code) => reject(new Error(`the gateway exited (${code}): ${text}`)));
  });
}

async function sandbox(volumes = [vol]): Promise<SandboxInstance> {
  const sb = await new Sandbox({ image: null, client, pool: "vsync", cpu: "250m", memory: 256, volumes }).create();
  opened.push(sb);
  await sb.fs.writeText("/tmp/vs.mjs", tsSync);
  await sb.fs.writeText("/tmp/volume_sync.py", pySync);
  return sb;
}

async function terminate(sb: SandboxInstance): Promise<void> {
  await sb.terminate();
  opened.splice(opened.indexOf(sb), 1);
}

/** Calls the TypeScript SDK's commitVolume/reloadVolume in the container; its JSON answer (or error code). */
async function ts(sb: SandboxInstance, call: string): Promise<Record<string, unknown>> {
  const script = `import("/tmp/vs.mjs").then((m) => ${call}).then((r) => console.log(JSON.stringify(r)), (e) => console.log(JSON.stringify({ error: e.code, message: e.message })))`;
  const r = await sb.process.run("node", ["-e", script]);
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** The same through the Python SDK's volume_sync module. */
async function py(sb: SandboxInstance, call: string): Promise<Record<string, unknown>> {
  const script = `import json, sys; sys.path.insert(0, "/tmp"); import volume_sync as v\ntry:\n  print(json.dumps(${call}))\nexcept v.VolumeSyncError as e:\n  print(json.dumps({"error": e.code}))`;
  const r = await sb.process.run("/usr/bin/python3", ["-c", script]);
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

async function read(sb: SandboxInstance, path: string): Promise<string | undefined> {
  const r = await sb.process.run("cat", [path]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

const version = async () => (await client.volumes.get("sync")).version;

describe("volume commit() and reload() while containers run (gateway + runc worker + both SDKs)", { skip }, () => {
  before(async () => {
    const { url, key } = await startGateway();
    client = new Client({ gateway: url, token: key });
    await client.createPool({ name: "vsync" });
    worker = await startWorker({
      gatewayUrl: url, token: (await client.createToken({ type: "worker" })).key, stateDir: join(dir, "worker"), logger: pino({ level: "silent" }),
      runtime: "runc", name: "vsync", subnet: "10.219.237.0/24", workerId: "volume-sync-e2e", pool: "vsync",
    });
    await worker.connected;
    await client.volumes.create("sync");
  });

  after(async () => {
    for (const sb of opened) await sb.terminate().catch(() => {});
    await worker?.close(1000).catch(() => {});
    await client?.close();
    if (gateway && gateway.exitCode === null) {
      const exited = new Promise((r) => gateway!.once("exit", r));
      gateway.kill("SIGTERM");
      await exited;
    }
    const mounts = readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(dir));
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(mounts, [], "no mount outlives the test");
    const mine = (s: ReturnType<typeof captureHostState>) => ownedBy(s, ["vsync"], [dir]);
    assert.deepEqual(mine(captureHostState()), mine(hostBefore), "netns, veths, bridges, mounts, cgroups and rules are all gone");
  });

  test("a commit is visible at once; a running container's reload brings it in; nothing is committed twice", async () => {
    const [a, b] = [await sandbox(), await sandbox()];
    assert.equal((await a.process.run("sh", ["-c", "mkdir -p /data/d && echo one > /data/d/a.txt && echo mine-b > /data/both.txt"])).exitCode, 0);
    // B changes both.txt too and does not commit: a reload keeps B's own.
    await b.process.run("sh", ["-c", "echo b-local > /data/both.txt"]);
    const first = await ts(a, `m.commitVolume("sync")`);
    assert.deepEqual({ changed: first.changed, removed: first.removed, busy: first.busy }, { changed: 2, removed: 0, busy: [] });
    assert.equal(await version(), first.version);
    assert.deepEqual((await client.volumes.ls("sync", "", { recursive: true })).map((e) => e.path), ["both.txt", "d/a.txt"], "visible before A exits");
    assert.deepEqual(await ts(a, `m.commitVolume("sync")`), { name: "sync", version: first.version, changed: 0, removed: 0, busy: [], skipped: [] }, "nothing sent twice");

    assert.equal(await read(b, "/data/d/a.txt"), undefined, "B sees its snapshot until it reloads");
    const reloaded = await py(b, `v.reload_volume("sync", "/data")`);
    assert.deepEqual(reloaded, { name: "sync", version: first.version, updated: 1, removed: 0, kept: ["both.txt"] });
    assert.equal(await read(b, "/data/d/a.txt"), "one\n");
    assert.equal(await read(b, "/data/both.txt"), "b-local\n", "B's uncommitted change is kept");

    // B publishes its version of both.txt (newer than A's); A removes its committed d/a.txt.
    const fromB = await py(b, `v.commit_volume("sync")`);
    assert.deepEqual([fromB.changed, fromB.removed], [1, 0], "what B reloaded is not sent back");
    await a.process.run("rm", ["/data/d/a.txt"]);
    const removal = await ts(a, `m.commitVolume("sync")`);
    assert.deepEqual([removal.changed, removal.removed], [1, 1], "d/a.txt removed; d, empty now, kept as a directory");
    // A ends: its exit commit must not send its older both.txt again over B's.
    await terminate(a);
    await terminate(b);
    const out = join(dir, "both.txt");
    await client.volumes.download("sync", "both.txt", out);
    assert.equal(readFileSync(out, "utf8"), "b-local\n");
    assert.deepEqual((await client.volumes.ls("sync", "", { recursive: true })).map((e) => [e.path, e.type]), [["both.txt", "file"], ["d", "dir"]]);
  });

  test("concurrent commits: distinct files all kept, one file left whole from one writer", async () => {
    const writers = [await sandbox(), await sandbox()];
    const hashes = await Promise.all(writers.map(async (sb, i) => {
      const r = await sb.process.run("sh", ["-c", `echo ${i} > /data/own-${i}.txt && head -c 4194304 /dev/urandom > /data/same.bin && sha256sum /data/same.bin`]);
      return r.stdout.split(" ")[0]!;
    }));
    const answers = await Promise.all(writers.map((sb, i) => (i === 0 ? ts(sb, `m.commitVolume("sync")`) : py(sb, `v.commit_volume("sync")`))));
    for (const a of answers) assert.equal(a.changed, 2, JSON.stringify(a));
    const paths = (await client.volumes.ls("sync", "", { recursive: true })).map((e) => e.path);
    assert.deepEqual(paths, ["both.txt", "d", "own-0.txt", "own-1.txt", "same.bin"]);
    const same = (await client.volumes.ls("sync", "same.bin"))[0]!;
    assert.ok(hashes.includes(same.sha256!), "same.bin is exactly one writer's bytes");
    for (const sb of writers) await terminate(sb);
  });

  test("symlinks and empty directories: a mid-run commit publishes them (as links, never followed), a running container's reload brings them in", async () => {
    const [a, b, c] = [await sandbox(), await sandbox(), await sandbox()];
    assert.equal((await a.process.run("sh", ["-c", "mkdir -p /data/ed/inner && ln -s /etc/shadow /data/l-abs && ln -s both.txt /data/l-rel"])).exitCode, 0);
    const committed = await ts(a, `m.commitVolume("sync")`);
    assert.deepEqual([committed.changed, committed.removed, committed.skipped], [3, 0, []], JSON.stringify(committed));
    const listed = await client.volumes.ls("sync", "", { recursive: true });
    assert.deepEqual(listed.filter((e) => e.type !== "file").map((e) => [e.path, e.type, e.target]), [
      ["d", "dir", undefined], ["ed/inner", "dir", undefined], ["l-abs", "link", "/etc/shadow"], ["l-rel", "link", "both.txt"],
    ]);
    for (const [sb, reload] of [[b, (x: SandboxInstance) => py(x, `v.reload_volume("sync", "/data")`)], [c, (x: SandboxInstance) => ts(x, `m.reloadVolume("sync", "/data")`)]] as const) {
      const answer = await reload(sb);
      assert.equal(answer.version, committed.version, JSON.stringify(answer));
      const seen = await sb.process.run("sh", ["-c", "readlink /data/l-abs /data/l-rel && test -d /data/ed/inner && ls -A /data/ed/inner | wc -l"]);
      assert.deepEqual(seen.stdout.trim().split("\n"), ["/etc/shadow", "both.txt", "0"], seen.stderr);
    }
    // A removes what it made: the link and the empty directory go from the volume too.
    await a.process.run("sh", ["-c", "rm /data/l-abs && rmdir /data/ed/inner"]);
    const removed = await ts(a, `m.commitVolume("sync")`);
    assert.equal(removed.removed, 2, JSON.stringify(removed));
    const after = (await client.volumes.ls("sync", "", { recursive: true })).filter((e) => e.type !== "file").map((e) => e.path);
    assert.deepEqual(after, ["d", "ed", "l-rel"], "ed is empty now in A's view: it stays as a directory");
    for (const sb of [a, b, c]) await terminate(sb);
  });

  test("a container can only commit or reload its own volumes; outside a container the SDKs say so", async () => {
    const sb = await sandbox();
    const other = await ts(sb, `m.commitVolume("someone-elses")`);
    assert.equal(other.error, "VOLUME_NOT_MOUNTED");
    assert.match(String(other.message), /does not mount a volume "someone-elses" \(it mounts: sync\)/);
    assert.deepEqual(await py(sb, `v.reload_volume("../x", "/data")`), { error: "VOLUME_NOT_MOUNTED" });
    assert.equal((await sb.process.run("sh", ["-c", "echo x > /.beta9-volumes/control/f"])).exitCode === 0, false, "the control directory is read-only");
    await terminate(sb);
    const saved = process.env.BETA9_VOLUME_CONTROL;
    delete process.env.BETA9_VOLUME_CONTROL;
    try {
      await assert.rejects(vol.commit(), /VOLUME_NOT_MOUNTED: commit\(\) and reload\(\) work inside a container/);
    } finally {
      if (saved !== undefined) process.env.BETA9_VOLUME_CONTROL = saved;
    }
  });
});
