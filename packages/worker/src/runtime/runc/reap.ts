/**
 * Removes what a previous worker with the same state dir and name left when it died (kill -9):
 * runc containers in our --root, overlay mounts under our state dir, our netns and veths, our
 * cgroup dirs, per-container dirs and shells' shadow states. Only objects carrying our name's prefix are touched. The
 * order matters: containers hold the mounts, netns and cgroups, so they go first.
 */
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tryRun } from "../../exec.js";
import type { ReapReport } from "../types.js";
import { countCgroupDirs, removeCgroupTree, removeEmptyCgroupAncestors, type CgroupHierarchy } from "./cgroups.js";
import type { RuntimeNames } from "./names.js";
import { reapContainerPolicies } from "./egress.js";
import { deleteNetns, deleteVeths, listNetns, listVeths } from "./network.js";
import { mountPointsUnder, unmount } from "./overlay.js";
import { removePoolDir } from "./disks.js";

export interface ReapContext {
  names: RuntimeNames;
  runcPath: string;
  hierarchies: CgroupHierarchy[];
  cgroupParent: string;
  /** This runtime's own spare-disk dir under names.disksDir (kept; siblings are a dead worker's). */
  ownDisks?: string | undefined;
}

export async function reapLeftovers(ctx: ReapContext): Promise<ReapReport> {
  // Counted up front: `runc delete` below removes the containers' own cgroup dirs itself.
  const cgroupsBefore = countCgroupDirs(ctx.hierarchies, ctx.cgroupParent);
  const containers = await reapRuncContainers(ctx);
  // Roots first: they sit on the disks and binds below the container dirs.
  const roots = await reapMounts(ctx.names.rootfsParent);
  const mounts = roots + (await reapMounts(ctx.names.containersDir)) + (await reapDisks(ctx.names.disksDir, ctx.ownDisks));
  // Never rm -rf through a mount that stayed (it would empty a container's layer).
  if (mountPointsUnder(ctx.names.rootfsParent).length === 0) rmSync(ctx.names.rootfsParent, { recursive: true, force: true });
  // Host-side veths first: deleting a netns alone removes its veth pair only asynchronously.
  const veths = await listVeths(ctx.names.vethPrefix);
  await deleteVeths(veths);
  const netns = await listNetns(ctx.names.netnsPrefix);
  await deleteNetns(netns);
  const egressChains = await reapContainerPolicies(ctx.names);
  await removeCgroupTree(ctx.hierarchies, ctx.cgroupParent);
  removeEmptyCgroupAncestors(ctx.hierarchies, ctx.cgroupParent);
  const cgroups = cgroupsBefore - countCgroupDirs(ctx.hierarchies, ctx.cgroupParent);
  reapContainerDirs(ctx.names.containersDir);
  // Shells' shadow runc states (shell-exec.ts): a dead worker's shells are gone with it.
  rmSync(join(ctx.names.stateDir, "exec"), { recursive: true, force: true });
  return { containers, mounts, netns: netns.length, veths: veths.length, cgroups, egressChains };
}

async function reapRuncContainers(ctx: ReapContext): Promise<number> {
  const runc = (...args: string[]): ReturnType<typeof tryRun> => tryRun(ctx.runcPath, ["--root", ctx.names.runcRoot, ...args]);
  const listed = await runc("list", "--quiet");
  const ids = listed.code === 0 ? listed.stdout.split("\n").filter(Boolean) : [];
  for (const id of ids) {
    await runc("kill", id, "KILL");
    // --force kills whatever is still in the container's cgroup and waits for it.
    await runc("delete", "--force", id);
  }
  return ids.length;
}

async function reapMounts(containersDir: string): Promise<number> {
  const points = mountPointsUnder(containersDir);
  for (const point of points) await unmount(point);
  return points.length;
}

function reapContainerDirs(containersDir: string): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(containersDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(containersDir, entry);
    // A mount that would not go away is left (rm -rf through it would empty it); reap() again later.
    if (mountPointsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  }
}

/** A dead worker's spare writable-layer disks (still loop-mounted) and their images. */
async function reapDisks(disksDir: string, keep: string | undefined): Promise<number> {
  let entries: string[] = [];
  try {
    entries = readdirSync(disksDir);
  } catch {
    return 0;
  }
  let count = 0;
  for (const entry of entries) {
    const dir = join(disksDir, entry);
    if (dir !== keep) count += await removePoolDir(dir);
  }
  return count;
}
