/**
 * The container cgroups runc creates under our absolute `cgroupsPath`, in every hierarchy (each v1
 * controller, name=systemd, and the v2 unified mount on a hybrid host). runc removes a container's
 * own directory on `delete` but never the parents it created, so we rmdir those ourselves.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export interface CgroupHierarchy {
  mountPoint: string;
  version: 1 | 2;
  /** v1: the controllers mounted there (e.g. ["cpu"], ["name=systemd"]); v2: []. */
  controllers: string[];
}

/** Every cgroup hierarchy mounted in our mount namespace, from /proc/self/mountinfo. */
export function listCgroupHierarchies(): CgroupHierarchy[] {
  const hierarchies: CgroupHierarchy[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const mountPoint = unescapeMountPath(left.split(" ")[4] ?? "");
    const [fsType, , superOptions = ""] = right.split(" ");
    if (fsType === "cgroup2") hierarchies.push({ mountPoint, version: 2, controllers: [] });
    if (fsType === "cgroup") {
      const known = /^(cpu|cpuacct|cpuset|memory|devices|freezer|blkio|pids|net_cls|net_prio|perf_event|hugetlb|rdma|misc|name=.*)$/;
      hierarchies.push({ mountPoint, version: 1, controllers: superOptions.split(",").filter((o) => known.test(o)) });
    }
  }
  return hierarchies;
}

/** mountinfo escapes spaces and a few other characters as \ooo octal. */
export function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The directory of `cgroupPath` (absolute, e.g. "/beta9/w1/ct1") in the hierarchy that holds `controller`. */
export function controllerDir(hierarchies: CgroupHierarchy[], controller: string, cgroupPath: string): string | undefined {
  const v1 = hierarchies.find((h) => h.version === 1 && h.controllers.includes(controller));
  if (v1) return join(v1.mountPoint, cgroupPath);
  const v2 = hierarchies.find((h) => h.version === 2 && existsSync(join(h.mountPoint, "cgroup.controllers")));
  if (v2 && readFileSync(join(v2.mountPoint, "cgroup.controllers"), "utf8").split(/\s+/).includes(controller)) {
    return join(v2.mountPoint, cgroupPath);
  }
  return undefined;
}

/**
 * How many processes the kernel OOM-killed in this cgroup: v1 `memory.oom_control` (oom_kill N) or
 * v2 `memory.events` (oom_kill N). Must be read before `runc delete` removes the directory.
 */
export function readOomKills(hierarchies: CgroupHierarchy[], cgroupPath: string): number {
  const dir = controllerDir(hierarchies, "memory", cgroupPath);
  if (!dir) return 0;
  for (const file of ["memory.oom_control", "memory.events"]) {
    try {
      const match = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, file), "utf8"));
      if (match?.[1]) return Number(match[1]);
    } catch {
      // not this cgroup version's file, or already gone
    }
  }
  return 0;
}

/**
 * Whether to set `swap` (= memory+swap) in config.json. On v1 runc fails without memsw accounting
 * (memory.memsw.*), so only then; on v2 runc turns it into memory.swap.max=0 and skips that file
 * when swap accounting is off.
 */
export function canLimitSwap(hierarchies: CgroupHierarchy[]): boolean {
  const v1Memory = hierarchies.find((h) => h.version === 1 && h.controllers.includes("memory"));
  if (!v1Memory) return true;
  return existsSync(join(v1Memory.mountPoint, "memory.memsw.limit_in_bytes"));
}

/** The existing directories for `cgroupPath`, one per hierarchy. */
export function existingDirs(hierarchies: CgroupHierarchy[], cgroupPath: string): string[] {
  return hierarchies.map((h) => join(h.mountPoint, cgroupPath)).filter((dir) => existsSync(dir));
}

/** How many directories `cgroupPath` and its descendants make up, over every hierarchy. */
export function countCgroupDirs(hierarchies: CgroupHierarchy[], cgroupPath: string): number {
  const count = (dir: string): number =>
    1 + readdirSync(dir, { withFileTypes: true }).reduce((sum, entry) => sum + (entry.isDirectory() ? count(join(dir, entry.name)) : 0), 0);
  return existingDirs(hierarchies, cgroupPath).reduce((sum, dir) => sum + count(dir), 0);
}

/**
 * Removes `cgroupPath` and everything below it in every hierarchy, killing stray processes first
 * (a crashed worker's containers). Returns how many directories were removed.
 */
export async function removeCgroupTree(hierarchies: CgroupHierarchy[], cgroupPath: string): Promise<number> {
  let removed = 0;
  for (const dir of existingDirs(hierarchies, cgroupPath)) removed += await removeDirTree(dir);
  return removed;
}

async function removeDirTree(dir: string): Promise<number> {
  let removed = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removed += await removeDirTree(join(dir, entry.name));
  }
  // rmdir fails with EBUSY while the cgroup has processes; they die within milliseconds of SIGKILL.
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return removed + 1;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return removed;
      killCgroupProcesses(dir);
      await delay(20);
    }
  }
  throw new Error(`cannot remove cgroup ${dir}: processes would not die`);
}

function killCgroupProcesses(dir: string): void {
  let pids: string[] = [];
  try {
    pids = readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * rmdir `cgroupPath` and then each parent up to the hierarchy root, in every hierarchy, stopping at
 * the first one still in use (EBUSY/ENOTEMPTY: another container or another runtime lives there).
 */
export function removeEmptyCgroupAncestors(hierarchies: CgroupHierarchy[], cgroupPath: string): number {
  const parts = cgroupPath.split("/").filter(Boolean);
  let removed = 0;
  for (const h of hierarchies) {
    for (let depth = parts.length; depth > 0; depth--) {
      try {
        rmdirSync(join(h.mountPoint, ...parts.slice(0, depth)));
        removed++;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") break;
      }
    }
  }
  return removed;
}

/**
 * Sets the container's CFS quota now (a running container's `runc update --cpu-quota`, without
 * the extra process): v1 `cpu.cfs_quota_us`, v2 `cpu.max`. False when its cgroup is gone.
 */
export function writeCpuQuota(hierarchies: CgroupHierarchy[], cgroupPath: string, quotaUs: number, periodUs: number): boolean {
  const dir = controllerDir(hierarchies, "cpu", cgroupPath);
  if (!dir) return false;
  try {
    if (existsSync(join(dir, "cpu.cfs_quota_us"))) writeFileSync(join(dir, "cpu.cfs_quota_us"), String(quotaUs));
    else writeFileSync(join(dir, "cpu.max"), `${quotaUs} ${periodUs}`);
    return true;
  } catch {
    return false;
  }
}
