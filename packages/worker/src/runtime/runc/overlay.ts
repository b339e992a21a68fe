/**
 * The container root: an overlay over the read-only image layers with a per-container upper/work
 * dir in the state dir, so the layers themselves are never written.
 */
import { mkdir } from "node:fs/promises";
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { run, tryRun } from "../../exec.js";
import { unescapeMountPath } from "./cgroups.js";

export interface OverlayDirs {
  upper: string;
  work: string;
  rootfs: string;
}

/**
 * With `upperDir` (ContainerSpec.upperDir: an image build keeping its layer) the writable layer
 * lives there and its work dir beside it (overlayfs needs both on one filesystem); otherwise both
 * are throw-away dirs in the container's state dir.
 */
export function overlayDirs(containerDir: string, upperDir?: string): OverlayDirs {
  return {
    upper: upperDir ?? join(containerDir, "upper"),
    work: upperDir ? `${upperDir}.work` : join(containerDir, "work"),
    rootfs: join(containerDir, "rootfs"),
  };
}

/**
 * The `lowerdir=` value. ContainerSpec.lowerDirs is "lowest first", but overlayfs wants the
 * topmost layer first (`lowerdir=top:…:bottom`), hence the reverse.
 */
export function lowerdirOption(lowerDirs: readonly string[]): string {
  if (lowerDirs.length === 0) throw new Error("lowerDirs is empty: a container needs at least one image layer");
  for (const dir of lowerDirs) {
    if (!isAbsolute(dir)) throw new Error(`lower dir ${JSON.stringify(dir)} must be an absolute path`);
    // ':' separates layers and ',' separates mount options; overlayfs would misparse either.
    if (/[:,\n]/.test(dir)) throw new Error(`lower dir ${JSON.stringify(dir)} contains ':' ',' or a newline`);
    if (!isDirectory(dir)) throw new Error(`lower dir ${dir} does not exist or is not a directory`);
  }
  return [...lowerDirs].reverse().join(":");
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export async function mountOverlay(lowerDirs: readonly string[], dirs: OverlayDirs): Promise<void> {
  const lowerdir = lowerdirOption(lowerDirs);
  await Promise.all([mkdir(dirs.upper, { recursive: true }), mkdir(dirs.work, { recursive: true }), mkdir(dirs.rootfs, { recursive: true })]);
  // nosuid,nodev: containers run with no_new_privs and get /dev from their own tmpfs, so neither
  // costs them anything, and the rootfs stays inert when reached from the host.
  await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lowerdir},upperdir=${dirs.upper},workdir=${dirs.work},nosuid,nodev`, dirs.rootfs]);
}

/** Unmounts `target` if mounted; falls back to a lazy unmount when something still holds it busy. */
export async function unmount(target: string): Promise<boolean> {
  if (!mountPointsUnder(target).includes(target)) return false;
  const result = await tryRun("umount", [target]);
  if (result.code === 0) return true;
  // Gone since the check (released by another path at the same moment): nothing left to do.
  if (!mountPointsUnder(target).includes(target)) return true;
  await run("umount", ["-l", target]);
  return true;
}

/** Mount points at or below `dir` (deepest first, so they can be unmounted in order). */
export function mountPointsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => unescapeMountPath(line.split(" ")[4] ?? ""))
    .filter((point) => point === dir || point.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}
