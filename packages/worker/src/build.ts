/**
 * Builds an image on this worker: the base (the default Debian + python3, or a registry image
 * pulled and checked by digest), then each step in its own build container whose writable layer
 * is kept and stacked under the next step, then the merged tree packed as squashfs. A failing
 * step names itself and the tail of its log; the work dir is removed whatever happens.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { normalizeImageSpec, parseImageRef, type ImageSpec, type ImageStep } from "@beta9/protocol";
import { run } from "./images/exec.js";
import { applyLayers, ensureBaseImage, packRootfs, RegistryClient } from "./images/index.js";
import type { Runtime } from "./runtime/types.js";

export interface BuildOptions {
  runtime: Runtime;
  /** Scratch space for builds (one subdirectory per build, removed afterwards). */
  workDir: string;
  /** Where the default base image is kept between builds. */
  baseCacheDir: string;
  log: (line: string, stream?: "stdout" | "stderr") => void;
  /** Base images may come from loopback, link-local or private registries (default: BETA9_ALLOW_PRIVATE_REGISTRIES=1). */
  allowPrivateRegistries?: boolean;
}

export interface BuiltImage {
  path: string;
  bytes: number;
  /** Removes the packed file and the build's scratch dir. */
  cleanup(): Promise<void>;
}

export class BuildStepError extends Error {
  override name = "BuildStepError";
}

const TAIL_LINES = 20;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The shell command of a step; package names were validated by the spec (no options, no quotes needed). */
export function stepCommand(step: ImageStep): string[] {
  switch (step.kind) {
    case "shell":
      return ["/bin/sh", "-c", step.command];
    case "apt":
      return ["/bin/sh", "-c", "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; " +
        `apt-get install -y -q --no-install-recommends ${step.packages.map(quote).join(" ")}; apt-get clean; rm -rf /var/lib/apt/lists/*`];
    case "pip":
      return ["/bin/sh", "-c", "set -e; python3 -m pip --version >/dev/null 2>&1 || " +
        "{ echo 'pip is not in this image: add an apt step with python3-pip before this one' >&2; exit 127; }; " +
        `python3 -m pip install --no-cache-dir --break-system-packages ${step.packages.map(quote).join(" ")}`];
    case "npm":
      return ["/bin/sh", "-c", "set -e; command -v npm >/dev/null 2>&1 || " +
        "{ echo 'npm is not in this image: add an apt step with npm before this one' >&2; exit 127; }; " +
        `npm install -g --no-fund --no-audit ${step.packages.map(quote).join(" ")}`];
    default: {
      const never: never = step;
      throw new Error(`unknown step ${JSON.stringify(never)}`);
    }
  }
}

function describeStep(step: ImageStep): string {
  return step.kind === "shell" ? `shell: ${step.command.slice(0, 80)}` : `${step.kind}: ${step.packages.join(" ")}`;
}

/** Base rootfs and the env its config declares. */
async function prepareBase(spec: ImageSpec, dir: string, o: BuildOptions): Promise<{ rootfs: string; env: Record<string, string> }> {
  if (spec.base.kind === "scratch") {
    o.log("base: scratch (empty; JavaScript runs on the runner's own node)");
    const rootfs = join(dir, "scratch");
    for (const sub of ["etc", "tmp", "proc", "sys", "dev", "root"]) await mkdir(join(rootfs, sub), { recursive: true });
    await writeFile(join(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/nonexistent\n");
    await writeFile(join(rootfs, "etc", "group"), "root:x:0:\n");
    return { rootfs, env: { PATH: DEFAULT_PATH } };
  }
  if (spec.base.kind === "default") {
    o.log("base: Debian bookworm (minbase) with python3");
    const base = await ensureBaseImage({ cacheDir: o.baseCacheDir, onProgress: (line) => o.log(`base: ${line}`) });
    return { rootfs: base.rootfs, env: { PATH: DEFAULT_PATH } };
  }
  o.log(`base: pulling ${spec.base.ref}`);
  const pulled = await new RegistryClient({ ...(o.allowPrivateRegistries !== undefined && { allowPrivate: o.allowPrivateRegistries }) }).pull(parseImageRef(spec.base.ref), join(dir, "blobs"));
  const rootfs = join(dir, "base");
  const stats = await applyLayers(rootfs, pulled.layers.map((l, i) => ({
    path: l.path, mediaType: l.mediaType, ...(pulled.config.rootfs?.diff_ids[i] && { diffId: pulled.config.rootfs.diff_ids[i] }),
  })));
  o.log(`base: ${stats.layers} layers, ${(stats.uncompressedBytes / 1_048_576).toFixed(1)} MiB`);
  const env: Record<string, string> = { PATH: DEFAULT_PATH };
  for (const kv of pulled.config.config?.Env ?? []) {
    const eq = kv.indexOf("=");
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { rootfs, env };
}

async function runStep(step: ImageStep, index: number, total: number, lowerDirs: string[], upperDir: string, env: Record<string, string>, o: BuildOptions) {
  const label = `step ${index + 1}/${total}`;
  o.log(`${label}: ${describeStep(step)}`);
  const tail: string[] = [];
  const handle = await o.runtime.start({
    id: `build-${randomBytes(6).toString("hex")}`,
    lowerDirs, upperDir, command: stepCommand(step), env: { ...env, HOME: "/root" },
    cpuMillicores: 2000, memoryMiB: 4096, pidsLimit: 4096,
    // Builds fetch packages, so they resolve names like the host does.
    mounts: [{ source: "/etc/resolv.conf", destination: "/etc/resolv.conf", readOnly: true }],
  }, (stream, line) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    o.log(`${label}: ${line}`, stream);
  });
  const exit = await handle.exited;
  if (exit.reason !== "exited" || exit.exitCode !== 0) {
    const how = exit.reason === "exited" ? `exit code ${exit.exitCode}` : `${exit.reason}${exit.message ? ` (${exit.message})` : ""}`;
    throw new BuildStepError(`${label} (${describeStep(step)}) failed with ${how}; last lines:\n${tail.join("\n")}`);
  }
}

export async function buildImage(imageId: string, specInput: unknown, o: BuildOptions): Promise<BuiltImage> {
  const spec = normalizeImageSpec(specInput);
  const dir = join(o.workDir, `${imageId}-${randomBytes(4).toString("hex")}`);
  const merged = join(dir, "merged");
  let mounted = false;
  const cleanup = async () => {
    if (mounted) await run(["umount", merged]).catch(() => undefined);
    mounted = false;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir(dir, { recursive: true });
    const base = await prepareBase(spec, dir, o);
    const env = { ...base.env, ...spec.env };
    const layers = [base.rootfs];
    for (const [i, step] of spec.steps.entries()) {
      const upper = join(dir, `layer-${i}`);
      await runStep(step, i, spec.steps.length, layers, upper, env, o);
      layers.push(upper);
    }
    // The image's own metadata travels inside it: the worker reads the env when it runs it.
    const meta = join(dir, "meta");
    await mkdir(join(meta, ".beta9"), { recursive: true });
    await writeFile(join(meta, ".beta9", "image.json"), `${JSON.stringify({ id: imageId, env, spec }, null, 2)}\n`);
    layers.push(meta);
    await mkdir(merged);
    // A read-only overlay of all layers is the image as containers will see it (whiteouts applied).
    await run(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${[...layers].reverse().join(":")},ro,nosuid,nodev`, merged]);
    mounted = true;
    o.log("packing (squashfs, zstd)");
    const packed = await packRootfs(merged, join(dir, "image.sqfs"));
    await run(["umount", merged]);
    mounted = false;
    o.log(`packed ${(packed.bytes / 1_048_576).toFixed(1)} MiB in ${Math.round(packed.ms)} ms`);
    return { path: packed.path, bytes: packed.bytes, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
