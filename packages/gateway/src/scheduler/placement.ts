/**
 * Where a container goes: a pure function over the workers' free capacity, so it can be tested
 * exhaustively. Best fit: among the workers that can take the request, the one left with the
 * least free CPU (then memory) afterwards. Busy workers fill up first and idle ones drain to zero.
 */
import type { ContainerRequest, WorkerCapacity } from "@beta9/protocol";

export interface PlacementCandidate {
  workerId: string;
  pool: string;
  /** Set for a machine's worker: it runs only this workspace's containers (the machine's owner's). */
  workspaceId?: string;
  schedulable: boolean;
  /**
   * False for a worker whose runtime isolates nothing (plain host processes) and whose operator did
   * not opt in (`--allow-unisolated`): it takes no containers at all, since any of them could read
   * the host's files and tokens. Undefined counts as true (a runc worker, or an opted-in pool).
   */
  mayRunUntrusted?: boolean;
  /** The worker enforces per-container egress policies; a demand with one goes nowhere else (it would run unfiltered). */
  filtersEgress?: boolean;
  capacity: WorkerCapacity;
  /** What containers already placed there hold. */
  reserved: { cpuMillicores: number; memoryMiB: number; gpus: Record<string, number> };
}

export type Demand = Pick<ContainerRequest, "cpuMillicores" | "memoryMiB" | "gpu" | "gpuCount" | "pool"> & Partial<Pick<ContainerRequest, "egress">> & { workspaceId?: string };

/** Whether the worker may run this demand were it isolating (schedulable, pool, owner), capacity aside. */
const reachable = (c: PlacementCandidate, demand: Demand): boolean =>
  c.schedulable && (demand.pool === null || c.pool === demand.pool) && (c.workspaceId === undefined || c.workspaceId === demand.workspaceId);

/** Whether the worker may run this demand at all, capacity aside. */
const eligible = (c: PlacementCandidate, demand: Demand): boolean =>
  reachable(c, demand) && c.mayRunUntrusted !== false && (demand.egress === undefined || c.filtersEgress === true);

/** The reason nothing may go to the workers that would otherwise take this demand, when it is isolation. */
function unisolatedOnly(candidates: readonly PlacementCandidate[], demand: Demand): string | undefined {
  if (candidates.some((c) => eligible(c, demand))) return undefined;
  const unfiltered = candidates.filter((c) => reachable(c, demand) && c.mayRunUntrusted !== false && c.filtersEgress !== true);
  if (demand.egress !== undefined && unfiltered.length > 0) {
    return `blockNetwork/allowList need a worker that enforces them, and ${unfiltered.map((c) => c.workerId).slice(0, 3).join(", ")} ` +
      "cannot (an older worker, or the process runtime): upgrade the worker, or leave the network policy out";
  }
  const refused = candidates.filter((c) => reachable(c, demand) && c.mayRunUntrusted === false);
  if (refused.length === 0) return undefined;
  const names = refused.slice(0, 3).map((c) => c.workerId).join(", ") + (refused.length > 3 ? ` and ${refused.length - 3} more` : "");
  return `the only worker${refused.length > 1 ? "s" : ""} that could run this (${names}) run${refused.length > 1 ? "" : "s"} the process runtime, ` +
    "which isolates nothing, so it takes no containers: install runc and run the worker as root (apt-get install runc), " +
    "or, if every workload and sandbox of this cluster is trusted, restart it with --allow-unisolated";
}

export type PlacementResult = { workerId: string; gpuType: string | null } | { workerId: null; reason: string };

function freeGpus(c: PlacementCandidate, type: string): number {
  const total = c.capacity.gpus.filter((g) => g.type === type).reduce((n, g) => n + g.count, 0);
  return total - (c.reserved.gpus[type] ?? 0);
}

/** The GPU type this worker would give, honouring the request's order of preference. */
function pickGpu(c: PlacementCandidate, demand: Demand): string | null | undefined {
  if (demand.gpuCount === 0) return null;
  const wanted = demand.gpu.includes("any") ? [...demand.gpu.filter((g) => g !== "any"), ...c.capacity.gpus.map((g) => g.type)] : demand.gpu;
  return wanted.find((type) => freeGpus(c, type) >= demand.gpuCount);
}

export function place(candidates: readonly PlacementCandidate[], demand: Demand): PlacementResult {
  let best: { c: PlacementCandidate; gpuType: string | null; cpuLeft: number; memLeft: number; gpuRank: number } | undefined;
  for (const c of candidates) {
    if (!eligible(c, demand)) continue;
    const cpuLeft = c.capacity.cpuMillicores - c.reserved.cpuMillicores - demand.cpuMillicores;
    const memLeft = c.capacity.memoryMiB - c.reserved.memoryMiB - demand.memoryMiB;
    if (cpuLeft < 0 || memLeft < 0) continue;
    const gpuType = pickGpu(c, demand);
    if (gpuType === undefined) continue;
    // Earlier GPU preferences win over tighter packing.
    const gpuRank = gpuType === null ? 0 : Math.max(0, demand.gpu.indexOf(gpuType));
    const better = !best || gpuRank < best.gpuRank ||
      (gpuRank === best.gpuRank && (cpuLeft < best.cpuLeft || (cpuLeft === best.cpuLeft && memLeft < best.memLeft)));
    if (better) best = { c, gpuType, cpuLeft, memLeft, gpuRank };
  }
  if (best) return { workerId: best.c.workerId, gpuType: best.gpuType };
  return { workerId: null, reason: explain(candidates, demand) };
}

/** Says why nothing fits, naming the largest free slot, so users know what to change. */
function explain(candidates: readonly PlacementCandidate[], demand: Demand): string {
  const want = `${demand.cpuMillicores}m CPU, ${demand.memoryMiB} MiB` +
    (demand.gpuCount > 0 ? `, ${demand.gpuCount}× ${demand.gpu.join("|")}` : "") + (demand.pool ? ` in pool ${demand.pool}` : "");
  const usable = candidates.filter((c) => eligible(c, demand));
  if (usable.length === 0) {
    const unisolated = unisolatedOnly(candidates, demand);
    if (unisolated) return unisolated;
    return candidates.length === 0 ? `no worker is connected (wanted ${want})` : `no schedulable worker${demand.pool ? ` in pool ${demand.pool}` : ""} (wanted ${want})`;
  }
  const largest = usable
    .map((c) => ({ cpu: c.capacity.cpuMillicores - c.reserved.cpuMillicores, mem: c.capacity.memoryMiB - c.reserved.memoryMiB }))
    .sort((a, b) => b.cpu - a.cpu || b.mem - a.mem)[0]!;
  return `no worker has room for ${want}; the largest free slot is ${largest.cpu}m CPU, ${largest.mem} MiB`;
}

/**
 * Why no connected worker could ever run `demand`, even with nothing else on it; undefined when one
 * could, or when no eligible worker is connected yet (one may be joining: the normal wait covers it).
 * Workers that isolate nothing and did not opt in count as a reason (they would never take it).
 * Names what is missing (a GPU type, or size), so a caller gets a clear answer instead of a timeout.
 */
export function neverFits(candidates: readonly PlacementCandidate[], demand: Demand): string | undefined {
  const usable = candidates.filter((c) => eligible(c, demand));
  if (usable.length === 0) return unisolatedOnly(candidates, demand);
  const empty = usable.map((c) => ({ ...c, reserved: { cpuMillicores: 0, memoryMiB: 0, gpus: {} } }));
  if (place(empty, demand).workerId !== null) return undefined;
  if (demand.gpuCount > 0) {
    const any = demand.gpu.includes("any");
    const fits = usable.some((c) => c.capacity.gpus.some((g) => (any || demand.gpu.includes(g.type)) && g.count >= demand.gpuCount));
    if (!fits) {
      const have = [...new Set(usable.flatMap((c) => c.capacity.gpus.map((g) => `${g.count}× ${g.type}`)))];
      return `no connected worker has ${demand.gpuCount}× ${demand.gpu.join(" or ")} GPU${demand.pool ? ` in pool ${demand.pool}` : ""} ` +
        `(connected workers have ${have.length > 0 ? have.join(", ") : "no GPUs"}); connect a worker that has it, or ask for less`;
    }
  }
  const largest = usable.map((c) => c.capacity).sort((a, b) => b.cpuMillicores - a.cpuMillicores || b.memoryMiB - a.memoryMiB)[0]!;
  return `no connected worker is large enough for ${demand.cpuMillicores}m CPU and ${demand.memoryMiB} MiB` +
    `${demand.gpuCount > 0 ? ` with ${demand.gpuCount}× ${demand.gpu.join(" or ")}` : ""}; the largest has ${largest.cpuMillicores}m CPU, ${largest.memoryMiB} MiB; ` +
    "connect a larger worker, or ask for less";
}
