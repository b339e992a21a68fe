/**
 * A snapshot of the host objects a runc runtime may create, to assert a test left the machine as
 * it found it: netns, veths, bridges, overlay mounts, containers in the default runc root, the nat
 * table, and the beta9 cgroup dirs.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export interface HostState {
  netns: string[];
  veths: string[];
  bridges: string[];
  overlayMounts: string[];
  defaultRuncContainers: string[];
  natTable: string[];
  cgroupDirs: string[];
}

function lines(file: string, args: string[]): string[] {
  try {
    return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

function interfaces(type: string): string[] {
  return lines("ip", ["-o", "link", "show", "type", type]).map((line) => /^\d+:\s+([^@:\s]+)/.exec(line)?.[1] ?? line);
}

/** Every cgroup dir below /beta9 in every hierarchy. */
function beta9CgroupDirs(): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    found.push(dir);
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) walk(join(dir, entry.name));
  };
  // v1/hybrid: /sys/fs/cgroup/<hierarchy>/beta9; pure v2: /sys/fs/cgroup/beta9.
  const candidates = ["/sys/fs/cgroup/beta9", ...readdirSync("/sys/fs/cgroup").map((hierarchy) => join("/sys/fs/cgroup", hierarchy, "beta9"))];
  for (const dir of candidates) if (existsSync(dir)) walk(dir);
  return found;
}

export function captureHostState(): HostState {
  return {
    netns: lines("ip", ["netns", "list"]).map((line) => line.split(" ")[0] ?? line),
    veths: interfaces("veth"),
    bridges: interfaces("bridge"),
    overlayMounts: readFileSync("/proc/mounts", "utf8").split("\n").filter((line) => line.startsWith("overlay ")),
    defaultRuncContainers: lines("runc", ["list", "--quiet"]),
    // Comments carry timestamps and [packets:bytes] counters change; neither is state we made.
    natTable: lines("iptables-save", []).filter((line) => !line.startsWith("#")).map((line) => line.replace(/\[\d+:\d+\]/, "")),
    cgroupDirs: beta9CgroupDirs(),
  };
}

/**
 * Only the entries the given runtime names could have made: test files run in parallel, so a
 * whole-host comparison would see the other file's live objects. Names are [a-z0-9]{1,8}.
 */
export function ownedBy(state: HostState, names: string[], paths: string[] = []): HostState {
  const markers = [...paths, ...names.flatMap((name) => [`b9-${name}-`, `b9${name}-`, `b9br-${name}`, `B9-${name.toUpperCase()}-`, `/beta9/${name}`])];
  const ours = (entry: string): boolean => markers.some((marker) => entry.includes(marker));
  return {
    netns: state.netns.filter(ours),
    veths: state.veths.filter(ours),
    bridges: state.bridges.filter(ours),
    overlayMounts: state.overlayMounts.filter(ours),
    defaultRuncContainers: state.defaultRuncContainers.filter(ours),
    natTable: state.natTable.filter(ours),
    cgroupDirs: state.cgroupDirs.filter(ours),
  };
}
