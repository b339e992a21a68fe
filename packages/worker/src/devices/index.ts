/** Runs every detector; one that throws is a warning, never a failed worker start. */
import { amdDetector } from "./amd.js";
import { appleDetector } from "./apple.js";
import { neuronDetector, tpuDetector } from "./accel.js";
import { intelDetector } from "./intel.js";
import { nvidiaDetector } from "./nvidia.js";
import type { CommandRunner, DetectContext, DeviceDetector, DeviceGroup } from "./types.js";
import { execRunner } from "./util.js";

export * from "./types.js";
export { DeviceAllocator, type DeviceAssignment } from "./allocator.js";
export { gpuTypeOf } from "./gpu-types.js";
export { NVIDIA_SMI_ARGS } from "./nvidia.js";
export { ROCM_SMI_ARGS } from "./amd.js";
export { execRunner } from "./util.js";

export const DETECTORS: readonly DeviceDetector[] = [nvidiaDetector, amdDetector, intelDetector, appleDetector, tpuDetector, neuronDetector];

export interface DetectOptions {
  run?: CommandRunner;
  root?: string;
  platform?: NodeJS.Platform;
  arch?: string;
  warn?: (message: string) => void;
  detectors?: readonly DeviceDetector[];
}

export async function detectDevices(options: DetectOptions = {}): Promise<DeviceGroup[]> {
  const warn = options.warn ?? (() => {});
  const ctx: DetectContext = {
    run: options.run ?? execRunner, root: options.root ?? "/", platform: options.platform ?? process.platform,
    arch: options.arch ?? process.arch, warn,
  };
  const results = await Promise.all((options.detectors ?? DETECTORS).map(async (detector) => {
    try {
      return await detector.detect(ctx);
    } catch (err) {
      warn(`${detector.name} device detection failed: ${(err as Error).message}`);
      return [];
    }
  }));
  return results.flat();
}

/** The scheduler's view: [{ type, count }] per GPU type. */
export function gpuInventory(groups: readonly DeviceGroup[]): { type: string; count: number }[] {
  const byType = new Map<string, number>();
  for (const g of groups) byType.set(g.type, (byType.get(g.type) ?? 0) + g.count);
  return [...byType].map(([type, count]) => ({ type, count }));
}
