/**
 * Parsing of the resource fields users write in stub configs, shared by SDK and gateway so that
 * a value accepted locally is accepted remotely. Each parser throws {@link ResourceParseError}
 * with a message that says what a valid value looks like.
 */
export class ResourceParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResourceParseError";
  }
}

export const CPU_MIN_MILLICORES = 100;
export const CPU_MAX_MILLICORES = 64_000;

/** Cores as a number (`2`, `0.5`) or a string (`"2"`, `"1500m"`) → millicores. */
export function parseCpu(value: unknown): number {
  let millicores: number;
  if (typeof value === "number" && Number.isFinite(value)) {
    millicores = Math.round(value * 1000);
  } else if (typeof value === "string" && /^\d+m$/.test(value.trim())) {
    millicores = Number.parseInt(value.trim(), 10);
  } else if (typeof value === "string" && /^\d+(\.\d+)?$/.test(value.trim())) {
    millicores = Math.round(Number(value.trim()) * 1000);
  } else {
    throw new ResourceParseError('must be cores as a number (2, 0.5) or a string ("2", "1500m")');
  }
  if (millicores < CPU_MIN_MILLICORES || millicores > CPU_MAX_MILLICORES) {
    throw new ResourceParseError(`must be between 0.1 and 64 cores, got ${millicores}m`);
  }
  return millicores;
}

const memoryUnits: Record<string, number> = {
  "": 1, // a bare number is MiB, as in beta9
  mi: 1,
  gi: 1024,
  ti: 1024 * 1024,
  m: 1_000_000 / 1_048_576,
  mb: 1_000_000 / 1_048_576,
  g: 1_000_000_000 / 1_048_576,
  gb: 1_000_000_000 / 1_048_576,
};

export const MEMORY_MIN_MIB = 16;
export const MEMORY_MAX_MIB = 2 * 1024 * 1024;

/** MiB as a number (`512`) or a string (`"16Gi"`, `"512Mi"`, `"1GB"`) → MiB. */
export function parseMemory(value: unknown): number {
  let mib: number;
  if (typeof value === "number" && Number.isFinite(value)) {
    mib = value;
  } else if (typeof value === "string") {
    const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
    const factor = match ? memoryUnits[match[2]!.toLowerCase()] : undefined;
    if (!match || factor === undefined) {
      throw new ResourceParseError('must be MiB as a number (512) or a string ("16Gi", "512Mi", "1GB")');
    }
    mib = Number(match[1]) * factor;
  } else {
    throw new ResourceParseError('must be MiB as a number (512) or a string ("16Gi", "512Mi", "1GB")');
  }
  mib = Math.ceil(mib);
  if (mib < MEMORY_MIN_MIB || mib > MEMORY_MAX_MIB) {
    throw new ResourceParseError(`must be between ${MEMORY_MIN_MIB} MiB and 2 TiB, got ${mib} MiB`);
  }
  return mib;
}

/** GPU types as beta9 names them; `any` means whichever GPU is free. */
export const GPU_TYPES = [
  "T4", "L4", "L40", "L40S", "A10", "A10G", "A100-40", "A100-80", "A16", "A30", "A40", "H100", "H200",
  "GH200", "B200", "B300", "GAUDI2", "A4000", "A5000", "A6000", "RTX4000Ada", "RTX4090", "RTX5090",
  "RTX6000", "RTX6000Ada", "RTXPro6000", "V100", "V100-32", "MI300X", "MI250", "ARC", "MPS", "TPU",
  "NEURON", "any",
] as const;

const gpuByKey = new Map<string, string>(GPU_TYPES.map((t) => [t.toLowerCase().replace(/[-_ ]/g, ""), t]));
gpuByKey.set("a100", "A100-40");

/** One GPU type or an ordered preference list → normalized list (`"a10g"` → `["A10G"]`). */
export function normalizeGpu(value: unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) return [];
  return list.map((item) => {
    const found = typeof item === "string" ? gpuByKey.get(item.toLowerCase().replace(/[-_ ]/g, "")) : undefined;
    if (!found) {
      throw new ResourceParseError(`unknown GPU type ${JSON.stringify(item)}; known types: ${GPU_TYPES.join(", ")}`);
    }
    return found;
  });
}

export function formatMemory(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
}

export function formatCpu(millicores: number): string {
  return millicores % 1000 === 0 ? String(millicores / 1000) : `${millicores}m`;
}
