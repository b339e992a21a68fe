/**
 * NVIDIA GPUs via nvidia-smi's CSV query. The per-GPU node is /dev/nvidia<minor>; the minor is
 * read from /proc/driver/nvidia/gpus/<bus>/information when present (it can differ from the
 * nvidia-smi index, which follows PCI order), else the index is used.
 */
import { gpuTypeOf } from "./gpu-types.js";
import type { DetectContext, Device, DeviceDetector, DeviceGroup } from "./types.js";
import { exists, readText, tryRun } from "./util.js";

export const NVIDIA_SMI_ARGS = [
  "--query-gpu=index,name,uuid,memory.total,memory.free,pci.bus_id",
  "--format=csv,noheader,nounits",
];

const CONTROL_NODES = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"];

/** "00000000:18:00.0" (nvidia-smi) → "0000:18:00.0" (procfs). */
function procBusId(busId: string): string {
  const parts = busId.toLowerCase().split(":");
  const domain = parts[0] ?? "";
  return [domain.length > 4 ? domain.slice(-4) : domain, ...parts.slice(1)].join(":");
}

function minorOf(ctx: DetectContext, busId: string | undefined): number | undefined {
  if (!busId) return undefined;
  const info = readText(ctx, `/proc/driver/nvidia/gpus/${procBusId(busId)}/information`);
  const m = info?.match(/Device Minor:\s*(\d+)/);
  return m ? Number(m[1]) : undefined;
}

export function parseNvidiaSmi(ctx: DetectContext, csv: string): (Device & { type: string })[] {
  const devices: (Device & { type: string })[] = [];
  for (const raw of csv.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const fields = line.split(",").map((f) => f.trim());
    // A product name could in principle hold a comma: the fixed fields are at both ends.
    if (fields.length < 6) {
      ctx.warn(`nvidia-smi: unexpected line ${JSON.stringify(line.slice(0, 120))}`);
      continue;
    }
    const [indexText, ...rest] = fields;
    const [busId, free, total, uuid] = [rest.pop(), rest.pop(), rest.pop(), rest.pop()];
    const name = rest.join(", ");
    const index = Number(indexText);
    const memoryMiB = Number(total);
    if (!Number.isInteger(index) || index < 0 || !Number.isFinite(memoryMiB) || name === "") {
      ctx.warn(`nvidia-smi: unexpected line ${JSON.stringify(line.slice(0, 120))}`);
      continue;
    }
    const memoryFree = Number(free);
    const minor = minorOf(ctx, busId) ?? index;
    devices.push({
      index, name, memoryMiB,
      ...(Number.isFinite(memoryFree) && free !== "" && { memoryFreeMiB: memoryFree }),
      ...(uuid && uuid.startsWith("GPU-") && { uuid }),
      nodes: [`/dev/nvidia${minor}`],
      type: gpuTypeOf(name, memoryMiB),
    });
  }
  return devices;
}

export const nvidiaDetector: DeviceDetector = {
  name: "nvidia",
  async detect(ctx) {
    const out = await tryRun(ctx, "nvidia-smi", NVIDIA_SMI_ARGS);
    if (out === undefined) return [];
    const devices = parseNvidiaSmi(ctx, out);
    if (devices.length === 0 && out.trim() !== "") ctx.warn("nvidia-smi answered but no GPU could be read from its output");
    const controlNodes = CONTROL_NODES.filter((n) => exists(ctx, n));
    return groupByType("nvidia", devices, controlNodes, ["NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"]);
  },
};

/** One group per product type: a machine with mixed GPUs offers each type separately. */
export function groupByType(
  vendor: DeviceGroup["vendor"], devices: (Device & { type: string })[], controlNodes: string[], visibleEnv: string[],
): DeviceGroup[] {
  const groups = new Map<string, DeviceGroup>();
  for (const { type, ...device } of devices) {
    let group = groups.get(type);
    if (!group) groups.set(type, (group = { vendor, type, count: 0, devices: [], controlNodes, visibleEnv }));
    group.devices.push(device);
    group.count += 1;
  }
  return [...groups.values()];
}
