import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { captureHostState, ownedBy } from "../../testing/host-state.js";
import { waitGone } from "../../testing/processes.js";
import { createHostRootfs } from "../../testing/rootfs.js";
import { makeStateRoot, runcSkipReason } from "../../testing/runc-fixtures.js";
import { controllerDir, existingDirs, listCgroupHierarchies } from "./cgroups.js";
import { RuntimeNames } from "./names.js";
import { listNetns, listVeths } from "./network.js";
import { mountPointsUnder } from "./overlay.js";
import { RuncRuntime } from "./runc-runtime.js";
import { tryRun } from "../../exec.js";

const skipReason = runcSkipReason();
const CHILD_SCRIPT = fileURLToPath(new URL("../../testing/runc-crash-child.js", import.meta.url));
/** Stand-in workers still alive are killed when the tests end, whatever happened. */
const children = new Set<ReturnType<typeof spawn>>();
after(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")));

/** Starts the stand-in worker and waits for the line it prints once its container runs. */
async function startCrashingWorker(args: string[]): Promise<{ child: ReturnType<typeof spawn>; id: string; pid: number }> {
  // Its stderr is collected, not inherited: a stand-in left running must not hold the runner's pipe.
  const child = spawn(process.execPath, [CHILD_SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096)));
  const firstLine = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the worker exited (${code}) before its container started: ${stderr}`)));
  });
  const { id, pid } = JSON.parse(firstLine) as { id: string; pid: number };
  return { child, id, pid };
}

test("kill -9 of a worker mid-run: reap() on the same stateDir/name removes everything", { skip: skipReason, timeout: 60_000 }, async () => {
  const hostBefore = captureHostState();
  const stateRoot = makeStateRoot();
  const rootfs = createHostRootfs();
  const name = `rp${randomBytes(3).toString("hex")}`;
  const stateDir = mkdtempSync(join(stateRoot, `${name}-`));
  const subnet = `10.219.${randomInt(100, 250)}.0/24`;
  const names = new RuntimeNames(name, stateDir);
  const hierarchies = listCgroupHierarchies();
  let runtime: RuncRuntime | undefined;
  try {
    const worker = await startCrashingWorker([stateDir, name, subnet, rootfs.lowerDir]);
    const cgroupPath = `/beta9/${name}/${worker.id}`;
    const procsFile = join(controllerDir(hierarchies, "pids", cgroupPath)!, "cgroup.procs");
    const readPids = () => readFileSync(procsFile, "utf8").split("\n").filter(Boolean).map(Number);
    // The container's sh has not always forked its `sleep` yet when start() resolves.
    while (readPids().length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    const containerPids = readPids();
    assert.ok(containerPids.includes(worker.pid) && containerPids.length >= 2, `container processes: ${containerPids}`);

    worker.child.kill("SIGKILL");
    await new Promise((resolve) => worker.child.once("exit", resolve));
    // Its root (under /run/beta9 with a user namespace), the binds and disk in its dir, a spare disk.
    const left = [names.rootfsParent, names.containersDir, names.disksDir].flatMap((dir) => mountPointsUnder(dir));
    assert.equal(mountPointsUnder(names.rootfsMountPoint(worker.id)).length, 1, "the crashed worker left its overlay mounted");
    // The egress policy is kernel state: the orphaned container stays filtered after its worker died.
    const rules = (await tryRun("iptables", ["-w", "-S"])).stdout;
    assert.match(rules, new RegExp(`^-A ${names.containersChain} -s 10\\.219\\.\\d+\\.\\d+/32 -j ${names.containerChainPrefix}[0-9A-F]{8}$`, "m"));
    assert.match(rules, new RegExp(`^-A ${names.containerChainPrefix}[0-9A-F]{8} -j REJECT --reject-with icmp-admin-prohibited$`, "m"), "its blockNetwork chain is still there");
    assert.match(rules, new RegExp(`^-A FORWARD -i b9br-${name} -j ${names.forwardChain}$`, "m"));

    // A shell's shadow runc state (shell-exec.ts) that the dead worker never released.
    const shadow = join(names.stateDir, "exec", "0123456789abcdef", worker.id);
    mkdirSync(shadow, { recursive: true });
    writeFileSync(join(shadow, "state.json"), "{}");

    runtime = new RuncRuntime({ stateDir, name, subnet });
    const report = await runtime.reap();
    assert.equal(existsSync(join(names.stateDir, "exec")), false, "shells' shadow states are removed");
    assert.equal(report.containers, 1);
    assert.equal(report.mounts, left.length, left.join("\n"));
    assert.equal(report.netns, 1);
    assert.equal(report.veths, 1);
    assert.ok(report.cgroups >= 1, JSON.stringify(report));
    assert.equal(report.egressChains, 1);
    assert.doesNotMatch((await tryRun("iptables", ["-w", "-S"])).stdout, new RegExp(`^-N ${names.containerChainPrefix}[0-9A-F]{8}$`, "m"));

    for (const pid of containerPids) assert.ok(await waitGone(pid), `container process ${pid} is gone`);
    // Only the new runtime's own spare writable-layer disk (made once the host is clean) may be mounted.
    const mounted = readFileSync("/proc/mounts", "utf8").split("\n").filter((line) => line.includes(stateDir));
    assert.deepEqual(mounted.filter((line) => !line.includes(names.disksDir)), [], "no mount under the state dir");
    assert.deepEqual(await listNetns(names.netnsPrefix), []);
    assert.deepEqual(await listVeths(names.vethPrefix), []);
    assert.deepEqual(existingDirs(hierarchies, cgroupPath), []);
    const listed = await tryRun("runc", ["--root", names.runcRoot, "list", "--quiet"]);
    assert.equal(listed.stdout.trim(), "", "no runc container left in our root");

    // The same id starts cleanly afterwards.
    const lines: string[] = [];
    const again = await runtime.start(
      { id: worker.id, lowerDirs: [rootfs.lowerDir], mounts: rootfs.mounts, command: ["echo", "again"], env: {}, cpuMillicores: 100, memoryMiB: 64 },
      (_stream, line) => lines.push(line),
    );
    assert.deepEqual(await again.exited, { exitCode: 0, reason: "exited" });
    assert.deepEqual(lines, ["again"]);
  } finally {
    await runtime?.close(500);
    // Whatever happened above, leave nothing: a last reap by a fresh instance.
    const last = new RuncRuntime({ stateDir, name, subnet });
    await last.reap();
    await last.close(500);
    rootfs.remove();
    rmSync(stateRoot, { recursive: true, force: true });
  }
  assert.deepEqual(ownedBy(captureHostState(), [name], [stateRoot]), ownedBy(hostBefore, [name], [stateRoot]));
});
