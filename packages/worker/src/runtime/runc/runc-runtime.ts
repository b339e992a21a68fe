/**
 * The `runc` Runtime: real isolation on Linux as root. Each container is a foreground
 * `runc run --keep` child (see launch.ts for why not conmon) over an overlayfs root, in its own
 * netns on a per-runtime bridge, under an absolute cgroup path, with a minimal capability set,
 * no_new_privs and a seccomp allow-list.
 *
 * Everything host-visible carries the runtime's `name` (see names.ts), so several runtimes can
 * share a machine and reap()/close() only touch their own.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, rmdirSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { guardSink } from "../lines.js";
import type { ContainerHandle, ContainerSpec, LogSink, ReapReport, Runtime, ShellCommand, ShellCommandOptions } from "../types.js";
import { runcShellCommand } from "./shell-exec.js";
import { canLimitSwap, listCgroupHierarchies, removeEmptyCgroupAncestors } from "./cgroups.js";
import { RuncContainer, type RuncContext } from "./container.js";
import { CONTAINER_ID_PATTERN, ROOTFS_BASE, RuntimeNames } from "./names.js";
import { parseEgressRule } from "@beta9/protocol";
import { hostNameservers } from "./egress.js";
import { BridgeNetwork } from "./network.js";
import { reapLeftovers } from "./reap.js";
import { DEFAULT_WRITABLE_LAYER_MIB, WritableLayerDisks } from "./disks.js";
import { ensureMountHelper, subidCollisions } from "./mount-helper.js";

export interface RuncRuntimeOptions {
  /** Where per-container dirs and runc's --root live; owned by this runtime. */
  stateDir: string;
  /** [a-z0-9]{1,8}; prefixes every host-visible object. */
  name: string;
  /** Container subnet (default 10.219.0.0/24; avoid 10.88/16, podman's). Must differ between runtimes on one host. */
  subnet?: string;
  /** Bridge interface name (default b9br-<name>). */
  bridge?: string;
  /** Absolute cgroup path containers go under (default /beta9/<name>). */
  cgroupParent?: string;
  runcPath?: string;
  /**
   * Destinations every container may reach although the default egress policy denies them
   * (private ranges, this machine): "CIDR", "CIDR:PORT" or "CIDR:LOW-HIGH". Default: none.
   */
  egressAllow?: string[];
  /**
   * Run containers in a user namespace (default true): container uids 0..65535 are host uids
   * usernsHostId.. (default DEFAULT_USERNS_HOST_ID), one range per worker. false = container root
   * is host root (only behind another isolation layer).
   */
  userns?: boolean;
  usernsHostId?: number;
  /** Bound on each container's writable layer in MiB (default 10 GiB); 0 = unbounded (host disk). */
  writableLayerMiB?: number;
}

export const DEFAULT_SUBNET = "10.219.0.0/24";
/**
 * Above the 100000+ ranges that useradd hands out in /etc/subuid (other users' rootless
 * containers) and below 2^31 (tools that read uids as signed). A collision is refused at start.
 */
export const DEFAULT_USERNS_HOST_ID = 1_000_000_000;
export const USERNS_SIZE = 65_536;

export class RuncRuntime implements Runtime {
  readonly name = "runc" as const;
  readonly isolates = true;
  private readonly ctx: RuncContext;
  private readonly containers = new Map<string, RuncContainer>();
  private closing = false;

  constructor(options: RuncRuntimeOptions) {
    const stateDir = resolve(options.stateDir);
    // The state dir ends up in overlay mount options, where ',' and ':' are separators.
    if (/[,:\s]/.test(stateDir)) throw new Error(`stateDir ${JSON.stringify(stateDir)} must not contain ',', ':' or whitespace`);
    const names = new RuntimeNames(options.name, stateDir);
    const cgroupParent = (options.cgroupParent ?? names.defaultCgroupParent).replace(/\/+$/, "");
    if (!isAbsolute(cgroupParent) || cgroupParent === "" || cgroupParent.includes("..")) {
      throw new Error(`cgroupParent must be an absolute cgroup path like /beta9/w1 (got ${JSON.stringify(options.cgroupParent)})`);
    }
    const bridge = options.bridge ?? names.defaultBridge;
    if (bridge.length > 15) throw new Error(`bridge name ${bridge} is longer than 15 characters`);
    const hierarchies = listCgroupHierarchies();
    const userns = options.userns === false ? undefined : { hostId: options.usernsHostId ?? DEFAULT_USERNS_HOST_ID, count: USERNS_SIZE };
    if (userns) {
      if (!Number.isInteger(userns.hostId) || userns.hostId < 1 || userns.hostId + userns.count > 2 ** 31) {
        throw new Error(`usernsHostId must be an integer in 1..${2 ** 31 - USERNS_SIZE} (got ${options.usernsHostId})`);
      }
      const collisions = subidCollisions(userns);
      if (collisions.length > 0) throw new Error(`the user namespace range ${userns.hostId}+${userns.count} overlaps ${collisions.join(", ")}: pick another usernsHostId`);
    }
    const diskMiB = options.writableLayerMiB ?? DEFAULT_WRITABLE_LAYER_MIB;
    if (!Number.isInteger(diskMiB) || diskMiB < 0) throw new Error(`writableLayerMiB must be a whole number >= 0 (got ${diskMiB})`);
    const helper = userns || diskMiB > 0 ? ensureMountHelper(join(stateDir, "bin")) : undefined;
    if (userns) {
      // Container roots are mounted below it and runc reaches them from inside the namespace.
      mkdirSync(ROOTFS_BASE, { recursive: true, mode: 0o711 });
      chmodSync(ROOTFS_BASE, 0o711);
    }
    this.ctx = {
      names,
      runcPath: options.runcPath ?? "runc",
      network: new BridgeNetwork(names, options.subnet ?? DEFAULT_SUBNET, bridge, {
        operatorAllow: (options.egressAllow ?? []).map((entry) => parseEgressRule(entry)), nameservers: hostNameservers(),
      }),
      hierarchies,
      cgroupParent,
      limitSwap: canLimitSwap(hierarchies),
      userns,
      helper,
      disks: diskMiB > 0 ? new WritableLayerDisks(join(names.disksDir, `${process.pid}-${randomBytes(3).toString("hex")}`), diskMiB, userns?.hostId ?? 0) : undefined,
    };
  }

  /** The host uid (and gid) that is root inside this runtime's containers (user namespaces), for files made for them (volumes). */
  get rootOwner(): number | undefined {
    return this.ctx.userns?.hostId;
  }

  /** The absolute cgroup path of a container (useful to read its counters). */
  cgroupPath(id: string): string {
    return `${this.ctx.cgroupParent}/${id}`;
  }

  async start(spec: ContainerSpec, onLog: LogSink): Promise<ContainerHandle> {
    if (this.closing) throw new Error(`cannot start container ${spec.id}: the runtime is closing`);
    if (!CONTAINER_ID_PATTERN.test(spec.id)) {
      throw new Error(`cannot start container: invalid id ${JSON.stringify(spec.id)} (must match ${CONTAINER_ID_PATTERN})`);
    }
    if (this.containers.has(spec.id)) throw new Error(`cannot start container ${spec.id}: a container with this id is running`);
    const container = new RuncContainer(this.ctx, spec, guardSink(onLog), () => this.onReleased(spec.id, container));
    // Registered before the first await: close() must see it, and cgroup parents must not be removed under it.
    this.containers.set(spec.id, container);
    await container.start();
    return container;
  }

  running(): string[] {
    return [...this.containers.keys()];
  }

  /** `runc exec` in the container: its namespaces, cgroup, capabilities, seccomp and env (plus `env`); see shell-exec.ts. */
  shellCommand(id: string, o: ShellCommandOptions): ShellCommand | undefined {
    if (!this.containers.has(id)) return undefined;
    return runcShellCommand(this.ctx.runcPath, this.ctx.names.runcRoot, join(this.ctx.names.stateDir, "exec"), id, o);
  }

  /** Refuses while this instance runs containers: their cgroups and netns would be reaped too. */
  async reap(): Promise<ReapReport> {
    if (this.containers.size > 0) throw new Error("reap() must run before start(): this runtime has running containers");
    const report = await reapLeftovers({ ...this.ctx, ownDisks: this.ctx.disks?.dir });
    // The host is clean: format the first spare now, so the first start does not pay for it.
    if (!this.closing) this.ctx.disks?.refill();
    return report;
  }

  async close(graceMs?: number): Promise<void> {
    this.closing = true;
    await Promise.all([...this.containers.values()].map((container) => container.stop(graceMs)));
    await Promise.all([this.ctx.network.removeBridge(), this.ctx.disks?.close()]);
    removeEmptyCgroupAncestors(this.ctx.hierarchies, this.ctx.cgroupParent);
    removeIfEmpty(this.ctx.names.containersDir);
    removeIfEmpty(this.ctx.names.rootfsParent);
    removeIfEmpty(this.ctx.names.disksDir);
    removeIfEmpty(this.ctx.names.runcRoot);
  }

  private onReleased(id: string, container: RuncContainer): void {
    if (this.containers.get(id) === container) this.containers.delete(id);
    // Only when idle: a start in flight may be about to create its cgroup under these parents.
    if (this.containers.size === 0) removeEmptyCgroupAncestors(this.ctx.hierarchies, this.ctx.cgroupParent);
  }
}

function removeIfEmpty(dir: string): void {
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // absent, or not ours to remove
  }
}
