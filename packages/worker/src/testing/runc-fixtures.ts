/** Shared setup for the runc runtime tests: skip reason, per-test runtimes, leftover checks. */
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listCgroupHierarchies, controllerDir, existingDirs } from "../runtime/runc/cgroups.js";
import { RuntimeNames } from "../runtime/runc/names.js";
import { mountPointsUnder } from "../runtime/runc/overlay.js";
import { RuncRuntime, type RuncRuntimeOptions } from "../runtime/runc/runc-runtime.js";

/** Why the runc tests cannot run here, or undefined when they can (root + runc + ip + iptables). */
export function runcSkipReason(): string | undefined {
  if (process.platform !== "linux") return "the runc runtime needs Linux";
  if (process.getuid?.() !== 0) return "the runc runtime tests need root (run them as root, as CI does)";
  for (const tool of ["runc", "ip", "iptables", "mount"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `${tool} is not installed (apt-get install runc iproute2 iptables)`;
    }
  }
  return undefined;
}

export interface TestRuntime {
  runtime: RuncRuntime;
  names: RuntimeNames;
  stateDir: string;
  name: string;
  subnet: string;
}

/**
 * A runtime with a unique name and a random /24 in 10.219.0.0/16, so concurrent test runs on one
 * machine do not collide (DEFAULT_SUBNET's 10.219.0.0/24 stays free for a real worker).
 */
export function makeTestRuntime(
  label: string,
  stateRoot: string,
  options: (subnet: string) => Pick<RuncRuntimeOptions, "egressAllow" | "userns" | "writableLayerMiB"> = () => ({}),
): TestRuntime {
  const name = `${label}${randomBytes(3).toString("hex")}`.slice(0, 8);
  const stateDir = mkdtempSync(join(stateRoot, `${name}-`));
  const subnet = `10.219.${randomInt(100, 250)}.0/24`;
  return { runtime: new RuncRuntime({ stateDir, name, subnet, ...options(subnet) }), names: new RuntimeNames(name, stateDir), stateDir, name, subnet };
}

export function makeStateRoot(): string {
  return mkdtempSync(join(tmpdir(), "b9-runc-test-"));
}

function lines(file: string, args: string[]): string[] {
  try {
    return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** Everything of container `id` still on the host: mounts, netns, cgroup dirs, state dir, runc state. */
export function runcLeftovers(test: TestRuntime, id: string): string[] {
  const found: string[] = [];
  const dir = test.names.containerDir(id);
  found.push(...[...mountPointsUnder(dir), ...mountPointsUnder(test.names.rootfsMountPoint(id))].map((point) => `mount ${point}`));
  if (existsSync(dir)) found.push(`dir ${dir}`);
  if (lines("ip", ["netns", "list"]).some((line) => line.split(" ")[0] === test.names.netns(id))) found.push(`netns ${test.names.netns(id)}`);
  found.push(...existingDirs(listCgroupHierarchies(), test.runtime.cgroupPath(id)).map((d) => `cgroup ${d}`));
  if (lines("runc", ["--root", test.names.runcRoot, "list", "--quiet"]).includes(id)) found.push(`runc container ${id}`);
  if (test.runtime.running().length === 0) {
    const veths = lines("ip", ["-o", "link", "show", "type", "veth"]).filter((line) => line.includes(`: ${test.names.vethPrefix}`));
    found.push(...veths.map((line) => `veth ${line.split(" ")[1]}`));
  }
  return found;
}

/** Reads a cgroup file of container `id` (e.g. "pids", "pids.current"). */
export function readCgroupFile(test: TestRuntime, id: string, controller: string, file: string): string {
  const dir = controllerDir(listCgroupHierarchies(), controller, test.runtime.cgroupPath(id));
  if (!dir) throw new Error(`no ${controller} cgroup hierarchy`);
  return readFileSync(join(dir, file), "utf8").trim();
}

/** A container's limits and counters with the v1/v2 file differences hidden. */
export interface CgroupView {
  /** "quota period" in µs, e.g. "50000 100000". */
  cpuMax: string;
  /** cpu.shares (cgroup v1) or cpu.weight (v2). */
  cpuWeight: number;
  memoryMaxBytes: number;
  pidsMax: string;
  pidsCurrent: number;
  /** How many forks the pids limit refused. */
  pidsRefused: number;
  cpuSeconds: number;
}

export function readCgroupView(test: TestRuntime, id: string): CgroupView {
  const read = (controller: string, file: string): string => readCgroupFile(test, id, controller, file);
  const v1 = listCgroupHierarchies().some((h) => h.version === 1 && h.controllers.includes("cpu"));
  const pidsRefused = Number(/max (\d+)/.exec(read("pids", "pids.events"))?.[1] ?? 0);
  const common = { pidsMax: read("pids", "pids.max"), pidsCurrent: Number(read("pids", "pids.current")), pidsRefused };
  if (v1) {
    return {
      ...common,
      cpuMax: `${read("cpu", "cpu.cfs_quota_us")} ${read("cpu", "cpu.cfs_period_us")}`,
      cpuWeight: Number(read("cpu", "cpu.shares")),
      memoryMaxBytes: Number(read("memory", "memory.limit_in_bytes")),
      cpuSeconds: Number(read("cpuacct", "cpuacct.usage")) / 1e9,
    };
  }
  return {
    ...common,
    cpuMax: read("cpu", "cpu.max"),
    cpuWeight: Number(read("cpu", "cpu.weight")),
    memoryMaxBytes: Number(read("memory", "memory.max")),
    cpuSeconds: Number(/usage_usec (\d+)/.exec(read("cpu", "cpu.stat"))?.[1] ?? NaN) / 1e6,
  };
}

/** What the cgroup shows for `shares` (runc writes cpu.shares on v1, converts to cpu.weight on v2 as below). */
export function expectedCpuWeight(shares: number): number {
  const v1 = listCgroupHierarchies().some((h) => h.version === 1 && h.controllers.includes("cpu"));
  return v1 ? shares : 1 + Math.floor(((shares - 2) * 9999) / 262_142);
}
