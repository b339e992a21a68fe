/**
 * Where a container goes: a pure function over the workers' free capacity, so it can be tested
 * exhaustively. Best fit: among the workers that can take the request, the one left with the
 * least free CPU (then memory) afterwards. Busy workers fill up first and idle ones drain to zero.
 */
import type { CapacityWait, ContainerRequest, WorkerCapacity } from "@beta9/protocol";

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

/** Whether some connected worker may run this demand at all, capacity aside. */
export function anyEligible(candidates: readonly PlacementCandidate[], demand: Pick<Demand, "pool" | "workspaceId" | "egress">): boolean {
  return candidates.some((c) => eligible(c, demand as Demand));
}

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

export type PlacementResult = { workerId: string; gpuType: string | null } | { workerId: null; reason: string; shortfall: CapacityShortfall };

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
  const shortfall = capacityShortfall(candidates, demand);
  return { workerId: null, reason: shortfall.reason, shortfall };
}

/** Why a demand waits, as the scheduler keeps it and callers see it (CapacityWait, less when it began). */
export type CapacityShortfall = Omit<CapacityWait, "message" | "since"> & {
  /** The figures in words, e.g. "needs 1000m CPU, 250m free on 1 worker". */
  reason: string;
};

/** What the worker has free for this demand; GPUs: the most of one wanted type. */
function freeFor(c: PlacementCandidate, demand: Demand): CapacityShortfall["free"] {
  const types = demand.gpuCount === 0 ? [] : demand.gpu.includes("any") ? c.capacity.gpus.map((g) => g.type) : demand.gpu;
  return {
    cpuMillicores: Math.max(0, c.capacity.cpuMillicores - c.reserved.cpuMillicores),
    memoryMiB: Math.max(0, c.capacity.memoryMiB - c.reserved.memoryMiB),
    gpus: Math.max(0, ...types.map((t) => freeGpus(c, t))),
  };
}

function short(free: CapacityShortfall["free"], demand: Demand): ("cpu" | "memory" | "gpu")[] {
  const out: ("cpu" | "memory" | "gpu")[] = [];
  if (free.cpuMillicores < demand.cpuMillicores) out.push("cpu");
  if (free.memoryMiB < demand.memoryMiB) out.push("memory");
  if (demand.gpuCount > 0 && free.gpus < demand.gpuCount) out.push("gpu");
  return out;
}

/**
 * Why nothing fits now, with figures, so users know what to wait for or change: which resource no
 * worker has enough of free (the most any one has, and on how many workers), or that no worker
 * could take it at all. Pure over the workers' snapshots, like place().
 */
export function capacityShortfall(candidates: readonly PlacementCandidate[], demand: Demand): CapacityShortfall {
  const needs = { cpuMillicores: demand.cpuMillicores, memoryMiB: demand.memoryMiB, gpu: demand.gpu, gpuCount: demand.gpuCount };
  const usable = candidates.filter((c) => eligible(c, demand));
  const where = demand.pool ? ` in pool ${demand.pool}` : "";
  if (usable.length === 0) {
    const free = { cpuMillicores: 0, memoryMiB: 0, gpus: 0 };
    const unisolated = unisolatedOnly(candidates, demand);
    if (unisolated) return { constraints: ["unusable"], workers: 0, needs, free, reason: unisolated };
    const reason = candidates.length === 0 ? `no worker connected${where}` :
      `no schedulable worker${where} (${candidates.length} connected, but cordoned, in another pool or another workspace's machine)`;
    return { constraints: ["no_worker"], workers: 0, needs, free, reason };
  }
  const frees = usable.map((c) => freeFor(c, demand));
  const most = {
    cpuMillicores: Math.max(...frees.map((f) => f.cpuMillicores)),
    memoryMiB: Math.max(...frees.map((f) => f.memoryMiB)),
    gpus: Math.max(...frees.map((f) => f.gpus)),
  };
  const n = usable.length;
  const on = (amount: string) => (n === 1 ? `${amount} free on 1 worker${where}` : `at most ${amount} free on any of ${n} workers${where}`);
  const gpuWant = `${demand.gpuCount}× ${demand.gpu.join("|")} GPU`;
  const lacking = short(most, demand);
  if (lacking.length > 0) {
    const parts = lacking.map((r) => r === "cpu" ? `needs ${demand.cpuMillicores}m CPU, ${on(`${most.cpuMillicores}m`)}` :
      r === "memory" ? `needs ${demand.memoryMiB} MiB memory, ${on(`${most.memoryMiB} MiB`)}` : `needs ${gpuWant}, ${on(String(most.gpus))}`);
    return { constraints: lacking, workers: n, needs, free: most, reason: parts.join("; ") };
  }
  // Each resource is free somewhere, never all on one worker: name what the closest one lacks.
  const closest = frees.map((f) => short(f, demand)).sort((a, b) => a.length - b.length)[0]!;
  const want = `${demand.cpuMillicores}m CPU, ${demand.memoryMiB} MiB memory${demand.gpuCount > 0 ? `, ${gpuWant}` : ""}`;
  return {
    constraints: closest, workers: n, needs, free: most,
    reason: `needs ${want} on one worker; none of ${n} workers${where} has all of it free`,
  };
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
  // Name the resource larger than every worker's whole capacity ("needs 8000m CPU; the largest connected worker has 2000m").
  const cpu = Math.max(...usable.map((c) => c.capacity.cpuMillicores));
  const mem = Math.max(...usable.map((c) => c.capacity.memoryMiB));
  const worker = `the largest connected worker${demand.pool ? ` in pool ${demand.pool}` : ""}`;
  const advice = "connect a larger worker, or ask for less";
  if (demand.cpuMillicores > cpu && demand.memoryMiB > mem) {
    return `needs ${demand.cpuMillicores}m CPU and ${demand.memoryMiB} MiB memory; ${worker} has ${cpu}m CPU, ${mem} MiB; ${advice}`;
  }
  if (demand.cpuMillicores > cpu) return `needs ${demand.cpuMillicores}m CPU; ${worker} has ${cpu}m; ${advice}`;
  if (demand.memoryMiB > mem) return `needs ${demand.memoryMiB} MiB memory; ${worker} has ${mem} MiB; ${advice}`;
  return `needs ${demand.cpuMillicores}m CPU and ${demand.memoryMiB} MiB` +
    `${demand.gpuCount > 0 ? ` with ${demand.gpuCount}× ${demand.gpu.join(" or ")}` : ""} on one worker, and no connected worker has all of it ` +
    `(the most: ${cpu}m CPU, ${mem} MiB); ${advice}`;
}
