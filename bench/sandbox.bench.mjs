// Sandboxes. (1) create → first runCode result: `new Sandbox({ image }).create()` then
// `runCode("print('I am running remotely')")` through the gateway and a local runc worker, the
// image already built, against the floor: a bare `runc run` of the same image (the default Debian
// + python3 rootfs) in a fresh netns on a bridge with an overlay, running the same python and
// reading its output, alternating in one run. (2) exec round trip of `true` through the gateway,
// against the same call made straight to the sandbox daemon (what the gateway hop costs).
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { pino } from "pino";
import { request } from "undici";
import { Client, Image, Sandbox } from "beta9";
import { startGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, median, prepareFloorHost } from "./lib.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const EXECS = Number(process.env.BENCH_EXECS ?? 200);
const CODE = "print('I am running remotely')";
const CACHE = process.env.BETA9_TEST_CACHE ?? "/var/tmp/beta9-test-cache";
const execAsync = promisify(execFile);
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const quiet = (cmd, args) => { try { sh(cmd, args); } catch { /* cleanup of what may not exist */ } };

/** The floor: the same image rootfs and code, started by hand with runc. */
function makeFloor(dir, rootfs) {
  const bridge = "b9benchsb0";
  const { runcRoot, template } = prepareFloorHost(dir, bridge, "10.219.252.1/24");
  let n = 0;
  return {
    async runCode() {
      n += 1;
      const id = `b9sbf-${n}`;
      const ns = `b9sbf-${n}`;
      const b = join(dir, id);
      mkdirSync(join(b, "upper"), { recursive: true }); mkdirSync(join(b, "work")); mkdirSync(join(b, "rootfs"));
      const t0 = performance.now();
      sh("ip", ["netns", "add", ns]);
      execFileSync("ip", ["-batch", "-"], { input: `link add b9sv${n} type veth peer name eth0 netns ${ns}\nlink set b9sv${n} master ${bridge} up\n` });
      execFileSync("ip", ["-n", ns, "-batch", "-"], { input: `addr add 10.219.252.${10 + (n % 200)}/24 dev eth0\nlink set eth0 up\nlink set lo up\n` });
      sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${join(b, "upper")},workdir=${join(b, "work")}`, join(b, "rootfs")]);
      const config = structuredClone(template);
      config.process.terminal = false;
      config.process.args = ["python3", "-c", CODE];
      config.process.env = ["PATH=/usr/local/bin:/usr/bin:/bin"];
      config.root = { path: "rootfs", readonly: false };
      config.linux.namespaces = config.linux.namespaces.map((x) => (x.type === "network" ? { type: "network", path: `/var/run/netns/${ns}` } : x));
      config.linux.cgroupsPath = `/b9bench/${id}`;
      config.linux.resources = { ...config.linux.resources, memory: { limit: 1024 * 1024 * 1024 }, cpu: { period: 100000, quota: 100000 } };
      writeFileSync(join(b, "config.json"), JSON.stringify(config));
      const { stdout } = await execAsync("runc", ["--root", runcRoot, "run", "--bundle", b, id]);
      const ms = performance.now() - t0;
      if (stdout.trim() !== "I am running remotely") throw new Error(`floor printed ${JSON.stringify(stdout)}`);
      quiet("runc", ["--root", runcRoot, "delete", "-f", id]);
      quiet("umount", [join(b, "rootfs")]);
      quiet("ip", ["link", "del", `b9sv${n}`]);
      quiet("ip", ["netns", "del", ns]);
      rmSync(b, { recursive: true, force: true });
      return ms;
    },
    close() {
      quiet("ip", ["link", "del", bridge]);
      for (const hierarchy of ["memory", "cpu", "cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd", "unified", ""]) {
        quiet("rmdir", [`/sys/fs/cgroup/${hierarchy}/b9bench`.replace("//", "/")]);
      }
    },
  };
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "sandbox", skipped: unavailable, print() { console.log(`\n## sandbox: skipped (${unavailable})`); } };
  const dir = mkdtempSync(join(tmpdir(), "beta9-bench-sandbox-"));
  mkdirSync(join(CACHE, "base-images"), { recursive: true });
  mkdirSync(join(dir, "worker"), { recursive: true });
  symlinkSync(join(CACHE, "base-images"), join(dir, "worker", "base-images")); // debootstrap once, not per run
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
  const key = gateway.bootstrap.token.key;
  const worker = await startWorker({ gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), logger: pino({ level: "warn" }), runtime: "runc", name: "sbench", subnet: "10.219.253.0/24", workerId: "sbench" });
  await worker.connected;
  const client = new Client({ gateway: gateway.url, token: key });
  const image = new Image();
  const times = { floor: [], subject: [], execGateway: [], execDirect: [] };
  let floor;
  try {
    // Build the image once (not measured), like a user's second run.
    const warm = await new Sandbox({ image, client }).create();
    await warm.terminate();
    const versions = readdirSync(join(CACHE, "base-images")).filter((v) => !v.includes("tmp"));
    mkdirSync(join(dir, "floor"));
    floor = makeFloor(join(dir, "floor"), join(CACHE, "base-images", versions[0], "rootfs"));
    const subject = async () => {
      const t0 = performance.now();
      const sb = await new Sandbox({ image, client }).create();
      const r = await sb.process.runCode(CODE);
      const ms = performance.now() - t0;
      if (r.result !== "I am running remotely") throw new Error(`sandbox printed ${JSON.stringify(r)}`);
      await sb.terminate();
      return ms;
    };
    await floor.runCode();
    await subject();
    for (let i = 0; i < ROUNDS; i++) {
      times.floor.push(await floor.runCode());
      times.subject.push(await subject());
    }

    const sb = await new Sandbox({ image, client }).create();
    const info = await sb.status();
    const c = await client.getContainer(info.containerId);
    const daemon = `http://${c.ports["8000"].host}:${c.ports["8000"].port}`;
    // The daemon's secret is never in an API answer; the bench reads it where the gateway keeps it.
    const db = new Database(join(dir, "gw", "gateway.db"), { readonly: true });
    const { secret } = JSON.parse(db.prepare("SELECT config FROM sandbox WHERE id = ?").get(sb.id).config);
    db.close();
    const direct = async () => {
      const res = await request(`${daemon}/exec`, { method: "POST", body: JSON.stringify({ cmd: "true" }), headers: { "content-type": "application/json", authorization: `Bearer ${secret}` } });
      const text = await res.body.text();
      if (!text.includes('"exitCode":0')) throw new Error(text);
    };
    for (let i = 0; i < 20; i++) { await sb.process.run("true"); await direct(); }
    for (let i = 0; i < EXECS; i++) {
      let t0 = performance.now();
      await sb.process.run("true");
      times.execGateway.push(performance.now() - t0);
      t0 = performance.now();
      await direct();
      times.execDirect.push(performance.now() - t0);
    }
    await sb.terminate();
  } finally {
    floor?.close();
    await client.close();
    await worker.close(2000);
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const f = median(times.floor);
  const s = median(times.subject);
  const eg = median(times.execGateway);
  const ed = median(times.execDirect);
  return {
    name: "sandbox: create → first runCode result vs bare runc run of the same image; exec `true` round trip",
    rounds: ROUNDS, floorMs: f, subjectMs: s, ratio: s / f, goal: "< 2",
    execRounds: EXECS, execGatewayMs: eg, execDirectMs: ed, execRatio: eg / ed,
    floorAll: times.floor, subjectAll: times.subject,
    print() {
      console.log(`\n## ${this.name}  (${ROUNDS} alternating rounds, medians)`);
      console.log(`  floor   runc run python3 (netns + overlay)        ${fmt(f, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.floor), 1)}, max ${fmt(Math.max(...times.floor), 1)})`);
      console.log(`  subject Sandbox.create() + runCode() via gateway  ${fmt(s, 1).padStart(7)} ms   (min ${fmt(Math.min(...times.subject), 1)}, max ${fmt(Math.max(...times.subject), 1)})`);
      console.log(`  ratio ${fmt(this.ratio, 2)} (goal < 2; E2B publishes ~150 ms, Daytona ~90 ms)`);
      console.log(`  exec \`true\` round trip (${EXECS}, medians): via gateway ${fmt(eg, 2)} ms, straight to the daemon ${fmt(ed, 2)} ms (ratio ${fmt(eg / ed, 2)})`);
    },
  };
}
