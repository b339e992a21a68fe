/**
 * Intel discrete GPUs (Arc, Data Center Flex/Max): xpu-smi discovery when installed, else sysfs
 * (vendor 0x8086 DRM cards). Integrated graphics also have vendor 0x8086 and are not offered to the
 * scheduler: only known discrete device-id families count.
 */
import { gpuTypeOf } from "./gpu-types.js";
import { groupByType } from "./nvidia.js";
import type { DetectContext, Device, DeviceDetector } from "./types.js";
import { bytesToMiB, drmCards, readText, renderNode, tryRun } from "./util.js";

const INTEL_VENDOR = "0x8086";

/** Discrete families by PCI device id prefix: Max (Ponte Vecchio), Flex, Arc A (Alchemist), Arc B (Battlemage). */
const DISCRETE: [RegExp, string][] = [
  [/^0x0bd/, "Intel Data Center GPU Max"],
  [/^0x56c/, "Intel Data Center GPU Flex"],
  [/^0x56/, "Intel Arc A-Series"],
  [/^0xe2[01]/, "Intel Arc B-Series"], // Battlemage: B580/B570 (0xe20b/c), Pro B60/B50 (0xe211/2)
];

function typeOf(name: string, memoryMiB: number): string {
  return /\barc\b/i.test(name) ? "ARC" : gpuTypeOf(name, memoryMiB);
}

interface XpuDevice {
  device_id?: number;
  device_name?: string;
  device_type?: string;
  drm_device?: string;
  uuid?: string;
  memory_physical_size_byte?: string | number;
}

async function fromXpuSmi(ctx: DetectContext): Promise<(Device & { type: string })[] | undefined> {
  const out = await tryRun(ctx, "xpu-smi", ["discovery", "-j"]);
  if (out === undefined) return undefined;
  let list: XpuDevice[];
  try {
    list = (JSON.parse(out) as { device_list?: XpuDevice[] }).device_list ?? [];
    if (!Array.isArray(list)) throw new Error("device_list is not an array");
  } catch {
    ctx.warn("xpu-smi discovery: output is not the expected JSON");
    return [];
  }
  return list
    .filter((d) => typeof d.device_id === "number" && (d.device_type ?? "GPU") === "GPU")
    .map((d) => {
      const card = d.drm_device?.split("/").pop();
      const name = d.device_name ?? "Intel GPU";
      const memoryMiB = bytesToMiB(d.memory_physical_size_byte) ?? 0;
      return {
        index: d.device_id!, name, memoryMiB, ...(d.uuid && { uuid: d.uuid }),
        nodes: card && /^card\d+$/.test(card) ? [renderNode(ctx, card)] : [], type: typeOf(name, memoryMiB),
      };
    });
}

function fromSysfs(ctx: DetectContext): (Device & { type: string })[] {
  const devices: (Device & { type: string })[] = [];
  for (const { card } of drmCards(ctx, INTEL_VENDOR)) {
    const deviceId = readText(ctx, `/sys/class/drm/${card}/device/device`)?.toLowerCase() ?? "";
    const family = DISCRETE.find(([pattern]) => pattern.test(deviceId));
    if (!family) continue;
    // Level Zero numbers discrete GPUs in card order, from 0.
    devices.push({ index: devices.length, name: `${family[1]} (${deviceId})`, memoryMiB: 0, nodes: [renderNode(ctx, card)], type: typeOf(family[1], 0) });
  }
  return devices;
}

export const intelDetector: DeviceDetector = {
  name: "intel",
  async detect(ctx) {
    const devices = (await fromXpuSmi(ctx)) ?? fromSysfs(ctx);
    return groupByType("intel", devices, [], ["ZE_AFFINITY_MASK"]);
  },
};
