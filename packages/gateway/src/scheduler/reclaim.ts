/**
 * Waiting work before idle warmth: when a container cannot be placed, workloads' containers that
 * sit idle only to stay warm (keep-warm) may be stopped early to make room. A pure function over
 * the workers' snapshots, like place(): which idle containers to stop, fewest first, least
 * recently used first, all on one worker (a container needs its room on one worker).
 */
import { place, type Demand, type PlacementCandidate } from "./placement.js";

export interface IdleContainer {
  id: string;
  workerId: string;
  cpuMillicores: number;
  memoryMiB: number;
  gpuType: string | null;
  gpuCount: number;
  /** When it last served (ms); the longest idle goes first. */
  lastUsedAt: number;
}

/** `reserved` less what these containers hold. */
export function without(reserved: PlacementCandidate["reserved"], freed: readonly IdleContainer[]): PlacementCandidate["reserved"] {
  const out = { cpuMillicores: reserved.cpuMillicores, memoryMiB: reserved.memoryMiB, gpus: { ...reserved.gpus } };
  for (const f of freed) {
    out.cpuMillicores -= f.cpuMillicores;
    out.memoryMiB -= f.memoryMiB;
    if (f.gpuType) out.gpus[f.gpuType] = (out.gpus[f.gpuType] ?? 0) - f.gpuCount;
  }
  return out;
}

/**
 * The fewest idle containers whose stopping lets `demand` fit on one worker, or undefined when
 * no worker would have room even with all of its idle containers stopped (then stopping any is
 * pointless: the demand waits for real capacity).
 */
export function reclaimPlan(candidates: readonly PlacementCandidate[], idle: readonly IdleContainer[], demand: Demand): string[] | undefined {
  let best: string[] | undefined;
  for (const c of candidates) {
    const mine = idle.filter((i) => i.workerId === c.workerId).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (let n = 1; n <= mine.length && (!best || n < best.length); n++) {
      const stopped = mine.slice(0, n);
      if (place([{ ...c, reserved: without(c.reserved, stopped) }], demand).workerId !== null) {
        best = stopped.map((s) => s.id);
        break;
      }
    }
  }
  return best;
}
