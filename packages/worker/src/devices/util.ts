/** Small helpers shared by the detectors: rooted filesystem reads and the real command runner. */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { CommandRunner, DetectContext } from "./types.js";

/** Runs a tool with a timeout; a hung vendor tool must not stall worker start. */
export const execRunner: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 15_000, maxBuffer: 8 * 1024 * 1024, encoding: "utf8" }, (err, stdout) => {
      if (err) reject(err);
      else resolve({ stdout });
    });
  });

/** `path` is absolute as on the host ("/sys/…"); it is read under ctx.root. */
export function rooted(ctx: DetectContext, path: string): string {
  return join(ctx.root, path);
}

export function readText(ctx: DetectContext, path: string): string | undefined {
  try {
    return readFileSync(rooted(ctx, path), "utf8").trim();
  } catch {
    return undefined;
  }
}

export function listDir(ctx: DetectContext, path: string): string[] {
  try {
    return readdirSync(rooted(ctx, path)).sort(naturalCompare);
  } catch {
    return [];
  }
}

export function exists(ctx: DetectContext, path: string): boolean {
  return existsSync(rooted(ctx, path));
}

/** "card10" after "card9". */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/** Runs a tool; a missing tool is silent (most machines lack most vendors), a failing one warns. */
export async function tryRun(ctx: DetectContext, command: string, args: string[]): Promise<string | undefined> {
  try {
    return (await ctx.run(command, args)).stdout;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") ctx.warn(`${command} ${args.join(" ")} failed: ${(err as Error).message.split("\n")[0]}`);
    return undefined;
  }
}

/** DRM cards of one PCI vendor ("0x10de", "0x1002", "0x8086"), skipping connectors like card0-DP-1. */
export function drmCards(ctx: DetectContext, vendorId: string): { card: string; index: number }[] {
  return listDir(ctx, "/sys/class/drm")
    .filter((name) => /^card\d+$/.test(name))
    .filter((card) => readText(ctx, `/sys/class/drm/${card}/device/vendor`)?.toLowerCase() === vendorId)
    .map((card) => ({ card, index: Number(card.slice(4)) }));
}

/** The render node of a DRM card (/dev/dri/renderD128…), from sysfs, else the usual numbering. */
export function renderNode(ctx: DetectContext, card: string): string {
  const render = listDir(ctx, `/sys/class/drm/${card}/device/drm`).find((n) => n.startsWith("renderD"));
  return `/dev/dri/${render ?? `renderD${128 + Number(card.slice(4))}`}`;
}

export function bytesToMiB(value: string | number | undefined): number | undefined {
  const n = typeof value === "number" ? value : Number(value);
  return value === undefined || value === "" || !Number.isFinite(n) || n < 0 ? undefined : Math.floor(n / 1_048_576);
}
