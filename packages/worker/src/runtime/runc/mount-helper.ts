/**
 * The container mounts that need syscalls Node cannot make: idmapped image layers and binds for
 * user namespaces, and moving a writable-layer disk into the container dir. Done by a small C
 * program (native/b9-mount.c) compiled once per source version into the runtime's state dir,
 * because runc 1.1 (Debian 12's) cannot idmap mounts and util-linux 2.38 cannot either.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findExecutable, run } from "../../exec.js";

/** Container uids/gids 0..count-1 are host ids hostId..hostId+count-1. */
export interface UserNamespace {
  hostId: number;
  count: number;
}

const SOURCE = fileURLToPath(new URL("../../../native/b9-mount.c", import.meta.url));

/** Compiles the helper unless this version is already there; returns its path or throws why not. */
export function ensureMountHelper(binDir: string): string {
  const source = readFileSync(SOURCE);
  const binary = join(binDir, `b9-mount-${createHash("sha256").update(source).digest("hex").slice(0, 12)}`);
  if (existsSync(binary)) return binary;
  const compiler = findExecutable("cc") ?? findExecutable("gcc");
  if (!compiler) throw new Error("no C compiler (cc) to build the mount helper: install gcc, or run the worker with --userns=false --writable-layer-mib=0");
  mkdirSync(binDir, { recursive: true, mode: 0o700 });
  const partial = `${binary}.${process.pid}.tmp`;
  execFileSync(compiler, ["-O2", "-o", partial, SOURCE], { stdio: ["ignore", "ignore", "pipe"] });
  chmodSync(partial, 0o700);
  renameSync(partial, binary);
  return binary;
}

export interface ContainerMounts {
  userns?: UserNamespace;
  /** A mounted writable-layer disk to move into the container dir first. */
  move?: { from: string; to: string };
  /** lowers: lowest first (ContainerSpec order). */
  overlay: { target: string; upper: string; work: string; lowers: readonly string[] };
  binds: readonly { source: string; target: string }[];
}

export async function mountContainer(helper: string, mounts: ContainerMounts): Promise<void> {
  const args: string[] = [];
  if (mounts.userns) args.push("--map", `${mounts.userns.hostId}:${mounts.userns.count}`);
  if (mounts.move) args.push("--move", mounts.move.from, mounts.move.to);
  const { target, upper, work, lowers } = mounts.overlay;
  args.push("--overlay", target, upper, work, [...lowers].reverse().join(":"));
  for (const bind of mounts.binds) args.push("--bind", bind.source, bind.target);
  await run(helper, args);
}

/**
 * For a user-namespaced container in a netns the host owns: root may bind ports below 1024 there
 * (as under Docker), and `sysfs` gets a read-only sysfs of that netns for the bundle to bind at /sys.
 */
export async function prepareNetns(helper: string, netnsPath: string, sysfs: string): Promise<void> {
  await run(helper, ["--netns-sysctl", netnsPath, "--sysfs", sysfs]);
}

/** Ranges in /etc/subuid or /etc/subgid (other users' rootless containers) that `userns` overlaps. */
export function subidCollisions(userns: UserNamespace, files: readonly string[] = ["/etc/subuid", "/etc/subgid"]): string[] {
  const found: string[] = [];
  for (const file of files) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const [owner, start, count] = line.trim().split(":");
      const from = Number(start);
      const size = Number(count);
      if (!owner || !Number.isInteger(from) || !Number.isInteger(size)) continue;
      if (from < userns.hostId + userns.count && userns.hostId < from + size) found.push(`${file}: ${line.trim()}`);
    }
  }
  return found;
}
