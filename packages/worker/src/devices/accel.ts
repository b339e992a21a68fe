/**
 * Cloud accelerators found by their device nodes: Google TPU (/dev/accel<N>, PCI vendor 0x1ae0;
 * TPU generations that use VFIO are not covered) and AWS Neuron (Inferentia/Trainium, /dev/neuron<N>,
 * with neuron-ls for names and memory when installed).
 */
import type { DetectContext, Device, DeviceDetector } from "./types.js";
import { bytesToMiB, listDir, readText, tryRun } from "./util.js";

const GOOGLE_VENDOR = "0x1ae0";

export const tpuDetector: DeviceDetector = {
  name: "tpu",
  async detect(ctx) {
    const devices: Device[] = [];
    for (const node of listDir(ctx, "/dev").filter((n) => /^accel\d+$/.test(n))) {
      // Other drivers (Habana, Intel NPU) use the accel class too: trust the vendor when sysfs has it.
      const vendor = readText(ctx, `/sys/class/accel/${node}/device/vendor`)?.toLowerCase();
      if (vendor !== undefined && vendor !== GOOGLE_VENDOR) continue;
      const deviceId = readText(ctx, `/sys/class/accel/${node}/device/device`);
      devices.push({ index: Number(node.slice(5)), name: deviceId ? `Google TPU (${deviceId})` : "Google TPU", memoryMiB: 0, nodes: [`/dev/${node}`] });
    }
    if (devices.length === 0) return [];
    return [{ vendor: "google", type: "TPU", count: devices.length, devices, controlNodes: [], visibleEnv: ["TPU_VISIBLE_CHIPS"] }];
  },
};

interface NeuronLsEntry {
  neuron_device?: number;
  nc_count?: number;
  memory_size?: number;
}

async function neuronLs(ctx: DetectContext): Promise<Map<number, NeuronLsEntry>> {
  const out = await tryRun(ctx, "neuron-ls", ["--json-output"]);
  const byIndex = new Map<number, NeuronLsEntry>();
  if (out === undefined) return byIndex;
  try {
    const list = JSON.parse(out) as NeuronLsEntry[];
    if (!Array.isArray(list)) throw new Error("not an array");
    for (const entry of list) if (typeof entry.neuron_device === "number") byIndex.set(entry.neuron_device, entry);
  } catch {
    ctx.warn("neuron-ls --json-output: output is not the expected JSON");
  }
  return byIndex;
}

export const neuronDetector: DeviceDetector = {
  name: "neuron",
  async detect(ctx) {
    const nodes = listDir(ctx, "/dev").filter((n) => /^neuron\d+$/.test(n));
    if (nodes.length === 0) return [];
    const info = await neuronLs(ctx);
    const devices = nodes.map((node): Device => {
      const index = Number(node.slice(6));
      const entry = info.get(index);
      const cores = entry?.nc_count ? ` (${entry.nc_count} NeuronCores)` : "";
      return { index, name: `AWS Neuron${cores}`, memoryMiB: bytesToMiB(entry?.memory_size) ?? 0, nodes: [`/dev/${node}`] };
    });
    // The Neuron runtime uses only the /dev/neuron<N> nodes it can open, so passing nodes restricts it.
    return [{ vendor: "aws", type: "NEURON", count: devices.length, devices, controlNodes: [], visibleEnv: [] }];
  },
};
