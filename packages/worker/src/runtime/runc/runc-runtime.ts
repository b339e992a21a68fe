/**
 * The `runc` Runtime: real isolation on Linux as root. Each container is a foreground
 * `runc run --keep` child (see launch.ts for why not conmon) over an overlayfs root, in its own
 * netns on a per-runtime bridge, under an absolute cgroup path, with a minimal capability set,
 * no_new_privs and a seccomp allow-list.
 *
 * Everything host-visible carries the runtime's `name` (see names.ts), so several runtimes can
 * share a machine and reap()/close() only touch their own.
 */
import { readdirSync, rmdirSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { guardSink } from "../lines.js";
import type { ContainerHandle, ContainerSpec, LogSink, ReapReport, Runtime } from "../types.js";
import { canLimitSwap, listCgroupHierarchies, removeEmptyCgroupAncestors } from "./cgroups.js";
import { RuncContainer, type RuncContext } from "./container.js";
import { CONTAINER_ID_PATTERN, RuntimeNames } from "./names.js";
import { parseEgressRule } from "@beta9/protocol";
import { hostNameservers } from "./egress.js";
import { BridgeNetwork } from "./network.js";
import { reapLeftovers } from "./reap.js";

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
}

export const DEFAULT_SUBNET = "10.219.0.0/24";

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
    this.ctx = {
      names,
      runcPath: options.runcPath ?? "runc",
      network: new BridgeNetwork(names, options.subnet ?? DEFAULT_SUBNET, bridge, {
        operatorAllow: (options.egressAllow ?? []).map((entry) => parseEgressRule(entry)), nameservers: hostNameservers(),
      }),
      hierarchies,
      cgroupParent,
      limitSwap: canLimitSwap(hierarchies),
    };
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

  /** Refuses while this instance runs containers: their cgroups and netns would be reaped too. */
  async reap(): Promise<ReapReport> {
    if (this.containers.size > 0) throw new Error("reap() must run before start(): this runtime has running containers");
    return reapLeftovers(this.ctx);
  }

  async close(graceMs?: number): Promise<void> {
    this.closing = true;
    await Promise.all([...this.containers.values()].map((container) => container.stop(graceMs)));
    await this.ctx.network.removeBridge();
    removeEmptyCgroupAncestors(this.ctx.hierarchies, this.ctx.cgroupParent);
    removeIfEmpty(this.ctx.names.containersDir);
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
