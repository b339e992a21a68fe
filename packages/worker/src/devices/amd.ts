/**
 * AMD GPUs: rocm-smi's JSON (product name, VRAM) when installed, else sysfs (vendor 0x1002 DRM
 * cards with VRAM counters, which only the amdgpu driver exposes). Nodes: the card's render node;
 * /dev/kfd is the compute control node every ROCm container needs.
 */
import { gpuTypeOf } from "./gpu-types.js";
import { groupByType } from "./nvidia.js";
import type { DetectContext, Device, DeviceDetector } from "./types.js";
import { bytesToMiB, drmCards, exists, readText, renderNode, tryRun } from "./util.js";

const AMD_VENDOR = "0x1002";
export const ROCM_SMI_ARGS = ["--showproductname", "--showmeminfo", "vram", "--json"];
/**
 * Integrated GPUs (APUs such as Raphael) report a small VRAM carve-out (64-512 MiB) and share the
 * host's memory: not offered as GPUs. A discrete or data-centre card has gigabytes.
 */
const APU_VRAM_MIB = 1024;

function parseJson(ctx: DetectContext, what: string, text: string): Record<string, Record<string, string>> | undefined {
  try {
    // Some rocm-smi versions print "WARNING: …" lines on stdout before the JSON.
    const value = JSON.parse(text.slice(Math.max(0, text.indexOf("{")))) as unknown;
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, Record<string, string>>;
  } catch {
    // fall through to the warning
  }
  ctx.warn(`rocm-smi ${what}: output is not the expected JSON object`);
  return undefined;
}

/** The first field whose name matches, whatever the rocm-smi version calls it. */
function field(entry: Record<string, string>, pattern: RegExp): string | undefined {
  const key = Object.keys(entry).find((k) => pattern.test(k));
  return key === undefined ? undefined : entry[key];
}

/** Free VRAM from byte counters (subtracting rounded MiB would be off by one). */
function freeMiB(totalBytes: string | undefined, usedBytes: string | undefined): number | undefined {
  const total = Number(totalBytes);
  const used = Number(usedBytes);
  if (totalBytes === undefined || usedBytes === undefined || !Number.isFinite(total) || !Number.isFinite(used)) return undefined;
  return bytesToMiB(Math.max(0, total - used));
}

async function fromRocmSmi(ctx: DetectContext): Promise<(Device & { type: string })[] | undefined> {
  // One call for names and VRAM: each card's entry holds both sets of fields.
  const out = await tryRun(ctx, "rocm-smi", ROCM_SMI_ARGS);
  if (out === undefined) return undefined;
  const cards = parseJson(ctx, ROCM_SMI_ARGS.join(" "), out);
  if (!cards) return [];
  const devices: (Device & { type: string })[] = [];
  for (const [card, entry] of Object.entries(cards)) {
    if (!/^card\d+$/.test(card) || typeof entry !== "object" || entry === null) continue;
    const name = field(entry, /^Card Series$/i) ?? field(entry, /Card SKU|Card Model/i) ?? "AMD GPU";
    const total = bytesToMiB(field(entry, /VRAM Total Memory/i));
    if (total !== undefined && total < APU_VRAM_MIB) continue;
    const free = freeMiB(field(entry, /VRAM Total Memory/i), field(entry, /VRAM Total Used/i));
    devices.push({
      index: Number(card.slice(4)), name, memoryMiB: total ?? 0,
      ...(free !== undefined && { memoryFreeMiB: free }),
      nodes: [renderNode(ctx, card)], type: gpuTypeOf(name, total ?? 0),
    });
  }
  return devices;
}

function fromSysfs(ctx: DetectContext): (Device & { type: string })[] {
  return drmCards(ctx, AMD_VENDOR)
    // Only amdgpu-driven cards expose VRAM counters (this skips old radeon cards); APUs have little VRAM.
    .filter(({ card }) => (bytesToMiB(readText(ctx, `/sys/class/drm/${card}/device/mem_info_vram_total`)) ?? 0) >= APU_VRAM_MIB)
    .map(({ card, index }) => {
      const base = `/sys/class/drm/${card}/device`;
      const deviceId = readText(ctx, `${base}/device`) ?? "";
      const name = readText(ctx, `${base}/product_name`) || `AMD GPU ${deviceId}`.trim();
      const totalBytes = readText(ctx, `${base}/mem_info_vram_total`);
      const total = bytesToMiB(totalBytes) ?? 0;
      const free = freeMiB(totalBytes, readText(ctx, `${base}/mem_info_vram_used`));
      return {
        index, name, memoryMiB: total, ...(free !== undefined && { memoryFreeMiB: free }),
        nodes: [renderNode(ctx, card)], type: gpuTypeOf(name, total),
      };
    });
}

export const amdDetector: DeviceDetector = {
  name: "amd",
  async detect(ctx) {
    const devices = (await fromRocmSmi(ctx)) ?? fromSysfs(ctx);
    if (devices.length === 0) return [];
    if (!exists(ctx, "/dev/kfd")) ctx.warn("AMD GPUs found but /dev/kfd is missing (is the amdgpu kernel driver loaded?)");
    return groupByType("amd", devices, exists(ctx, "/dev/kfd") ? ["/dev/kfd"] : [], ["ROCR_VISIBLE_DEVICES"]);
  },
};
