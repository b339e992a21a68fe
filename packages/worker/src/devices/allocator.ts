/**
 * Hands specific devices to GPU containers and tracks which are in use, so two containers never
 * share a GPU. The assignment carries the device nodes for the runtime and the env that tells the
 * workload which devices it has.
 */
import type { Device, DeviceGroup } from "./types.js";

export interface DeviceAssignment {
  type: string;
  indices: number[];
  /** The assigned devices' nodes plus their vendor's control nodes. */
  nodes: string[];
  env: Record<string, string>;
}

export class DeviceAllocator {
  /** "<vendor>/<type>/<index>" → container id. */
  private readonly inUse = new Map<string, string>();
  private readonly byContainer = new Map<string, string[]>();

  constructor(private readonly groups: readonly DeviceGroup[]) {}

  /**
   * `types` in preference order ("any" matches every type). `isolated`: the runtime exposes only
   * the assigned nodes, so the workload's vendor runtime numbers them from 0 — index-based env
   * must then be 0..n-1, not host indices. NVIDIA UUIDs are right either way and preferred.
   */
  allocate(containerId: string, types: readonly string[], count: number, isolated: boolean): DeviceAssignment {
    if (count <= 0) return { type: "", indices: [], nodes: [], env: {} };
    if (this.byContainer.has(containerId)) throw new Error(`container ${containerId} already holds devices`);
    const wanted = types.length === 0 ? ["any"] : types;
    for (const type of wanted) {
      for (const group of this.groups) {
        if (type !== "any" && group.type.toLowerCase() !== type.toLowerCase()) continue;
        const free = group.devices.filter((d) => !this.inUse.has(this.key(group, d)));
        if (free.length < count) continue;
        const chosen = free.slice(0, count);
        const keys = chosen.map((d) => this.key(group, d));
        for (const k of keys) this.inUse.set(k, containerId);
        this.byContainer.set(containerId, keys);
        return {
          type: group.type,
          indices: chosen.map((d) => d.index),
          nodes: [...new Set([...chosen.flatMap((d) => d.nodes), ...group.controlNodes])],
          env: visibleEnv(group, chosen, isolated),
        };
      }
    }
    const have = this.groups.map((g) => `${g.type}: ${this.free(g)}/${g.count} free`).join(", ") || "no accelerators";
    throw new Error(`no ${count} free GPU(s) of type ${wanted.join(" or ")} on this worker (${have})`);
  }

  release(containerId: string): void {
    for (const k of this.byContainer.get(containerId) ?? []) this.inUse.delete(k);
    this.byContainer.delete(containerId);
  }

  /** Total and free device counts, for keepalive reports. */
  usage(): { total: number; free: number } {
    const total = this.groups.reduce((n, g) => n + g.count, 0);
    return { total, free: total - this.inUse.size };
  }

  private free(group: DeviceGroup): number {
    return group.devices.filter((d) => !this.inUse.has(this.key(group, d))).length;
  }

  private key(group: DeviceGroup, device: Device): string {
    return `${group.vendor}/${group.type}/${device.index}`;
  }
}

function visibleEnv(group: DeviceGroup, chosen: Device[], isolated: boolean): Record<string, string> {
  const uuids = chosen.map((d) => d.uuid);
  const useUuids = group.vendor === "nvidia" && uuids.every((u) => u !== undefined);
  const value = useUuids ? uuids.join(",") : (isolated ? chosen.map((_, i) => i) : chosen.map((d) => d.index)).join(",");
  return Object.fromEntries(group.visibleEnv.map((name) => [name, value]));
}
