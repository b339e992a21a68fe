/** What this machine offers to the scheduler, minus a reserve for the worker and the OS. */
import { availableParallelism, totalmem } from "node:os";
import type { WorkerCapacity } from "@beta9/protocol";
import { gpuInventory } from "./devices/index.js";
import type { DeviceGroup } from "./devices/types.js";

/** GPUs come from the detected devices (see devices/) unless `overrides.gpus` says otherwise. */
export function detectCapacity(overrides: Partial<WorkerCapacity> = {}, devices: readonly DeviceGroup[] = []): WorkerCapacity {
  const memoryMiB = Math.floor(totalmem() / 1_048_576);
  // Keep 10% (at least 256 MiB) for the worker, the kernel and page cache.
  const reserve = Math.max(256, Math.floor(memoryMiB * 0.1));
  return {
    cpuMillicores: overrides.cpuMillicores ?? availableParallelism() * 1000,
    memoryMiB: overrides.memoryMiB ?? Math.max(0, memoryMiB - reserve),
    gpus: overrides.gpus ?? gpuInventory(devices),
  };
}
