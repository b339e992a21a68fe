/**
 * Product name → the scheduler's GPU type (protocol GPU_TYPES). Ordered: the first match wins, so
 * more specific names ("L40S", "A100 80GB", "RTX 6000 Ada") come before their prefixes.
 */
const RULES: [RegExp, string | ((m: RegExpMatchArray, memoryMiB: number) => string)][] = [
  [/GH200/, "GH200"],
  [/H200/, "H200"],
  [/H100/, "H100"],
  [/B300/, "B300"],
  [/B200/, "B200"],
  [/A100/, (_m, mem) => (mem > 50_000 ? "A100-80" : "A100-40")],
  [/L40S/, "L40S"],
  [/L40/, "L40"],
  [/\bL4\b/, "L4"],
  [/A10G/, "A10G"],
  [/\bA10\b/, "A10"],
  [/\bA16\b/, "A16"],
  [/\bA30\b/, "A30"],
  [/\bA40\b/, "A40"],
  [/\bT4\b/, "T4"],
  [/V100/, (_m, mem) => (mem > 20_000 ? "V100-32" : "V100")],
  [/RTX PRO 6000/, "RTXPro6000"],
  [/RTX 6000 ADA/, "RTX6000Ada"],
  [/RTX 4000 ADA/, "RTX4000Ada"],
  [/RTX 6000/, "RTX6000"],
  [/RTX 5090/, "RTX5090"],
  [/RTX 4090/, "RTX4090"],
  [/RTX A6000|\bA6000\b/, "A6000"],
  [/RTX A5000|\bA5000\b/, "A5000"],
  [/RTX A4000|\bA4000\b/, "A4000"],
  [/MI300X/, "MI300X"],
  [/MI250/, "MI250"],
  [/GAUDI ?2/, "GAUDI2"],
];

/** An unknown product keeps its own name (without the vendor prefix) so it is still reported. */
export function gpuTypeOf(productName: string, memoryMiB = 0): string {
  const name = productName.toUpperCase().replace(/[-_]/g, " ").replace(/\s+/g, " ");
  for (const [pattern, type] of RULES) {
    const m = name.match(pattern);
    if (m) return typeof type === "string" ? type : type(m, memoryMiB);
  }
  return productName.replace(/^(NVIDIA|Tesla|AMD|Intel\(R\)|Intel)\s+/i, "").trim() || "unknown";
}
