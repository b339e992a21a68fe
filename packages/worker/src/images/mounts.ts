/**
 * Mount helpers: read /proc/self/mountinfo, mount a packed image read-only, unmount. Every image
 * mount goes through here so that recovery can find what an earlier process left behind.
 */
import { readFile } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { run } from "../exec.js";

/** mountinfo escapes space, tab, newline and backslash as octal (\040 etc.). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points currently visible to this process, in mount order. */
export async function listMountPoints(): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => unescapeMountPath(line.split(" ")[4] ?? ""));
}

export async function isMountPoint(path: string): Promise<boolean> {
  const target = resolve(path);
  return (await listMountPoints()).includes(target);
}

/** Mount points strictly below `dir`, deepest (most recently mounted) first: the unmount order. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = resolve(dir) + sep;
  return (await listMountPoints()).filter((p) => p.startsWith(prefix)).reverse();
}

/** Unmounts `path`; with `lazy`, a busy mount is detached instead of failing (used at shutdown). */
export async function unmount(path: string, options: { lazy?: boolean } = {}): Promise<void> {
  try {
    await run("umount", [path]);
  } catch (err) {
    if (!options.lazy) throw err;
    await run("umount", ["--lazy", path]);
  }
}

/** Unmounts everything below `dir` (a crashed process's leftovers). Returns what it unmounted. */
export async function unmountAllUnder(dir: string): Promise<string[]> {
  const found = await mountsUnder(dir);
  for (const mountPoint of found) await unmount(mountPoint, { lazy: true });
  return found;
}
