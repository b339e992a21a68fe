/**
 * Apple Silicon: one MPS device (the SoC's GPU, with unified memory). Only on darwin/arm64, where
 * the `process` runtime lets PyTorch use MPS; there are no device nodes to pass.
 */
import type { DeviceDetector } from "./types.js";
import { bytesToMiB, tryRun } from "./util.js";

interface DisplaysEntry {
  _name?: string;
  sppci_model?: string;
  sppci_cores?: string;
  spdisplays_vendor?: string;
}

export const appleDetector: DeviceDetector = {
  name: "apple",
  async detect(ctx) {
    if (ctx.platform !== "darwin" || ctx.arch !== "arm64") return [];
    const brand = (await tryRun(ctx, "sysctl", ["-n", "machdep.cpu.brand_string"]))?.trim() ?? "";
    if (!brand.startsWith("Apple")) {
      ctx.warn(`darwin/arm64 but the CPU is ${JSON.stringify(brand)}; not offering MPS`);
      return [];
    }
    let gpu: DisplaysEntry | undefined;
    const profile = await tryRun(ctx, "system_profiler", ["SPDisplaysDataType", "-json"]);
    if (profile !== undefined) {
      try {
        const entries = (JSON.parse(profile) as { SPDisplaysDataType?: DisplaysEntry[] }).SPDisplaysDataType ?? [];
        gpu = entries.find((e) => /apple/i.test(e.spdisplays_vendor ?? "") || /apple/i.test(e.sppci_model ?? ""));
      } catch {
        ctx.warn("system_profiler SPDisplaysDataType: output is not the expected JSON");
      }
    }
    const memoryMiB = bytesToMiB((await tryRun(ctx, "sysctl", ["-n", "hw.memsize"]))?.trim()) ?? 0;
    const model = gpu?.sppci_model ?? brand;
    const name = gpu?.sppci_cores ? `${model} (${gpu.sppci_cores}-core GPU)` : model;
    return [{ vendor: "apple", type: "MPS", count: 1, devices: [{ index: 0, name, memoryMiB, nodes: [] }], controlNodes: [], visibleEnv: [] }];
  },
};
