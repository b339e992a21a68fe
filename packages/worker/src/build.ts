/**
 * Builds an image on this worker: the base (the default Debian + python3, or a registry image
 * pulled and checked by digest, with the credentials the gateway resolved for this build), then
 * each step in order: commands in their own build container whose writable layer is kept and
 * stacked under the next step, copy steps written into a layer of their own (build-fs.ts), env
 * steps into the environment; then the merged tree packed as squashfs. A failing step names itself
 * and the tail of its log; the work dir is removed whatever happens.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { credentialSecretNames, expandEnvValue, normalizeImageSpec, parseImageRef, type ImageSpec, type ImageStep } from "@beta9/protocol";
import { copyIntoImage, lookupUser, withOverlay, type ImageUser } from "./images/build-fs.js";
import { run } from "./exec.js";
import { unmountAllUnder } from "./images/mounts.js";
import { applyLayers, ensureBaseImage, packRootfs, RegistryClient, RegistryError, type RegistryCredentialValues } from "./images/index.js";
import type { Runtime } from "./runtime/types.js";

/** Pull credentials as the gateway sends them: the values of the secrets the spec names. */
export type BuildCredentials = { username: string; password: string } | { token: string };

export interface BuildOptions {
  runtime: Runtime;
  /** Scratch space for builds (one subdirectory per build, removed afterwards). */
  workDir: string;
  /** Where the default base image is kept between builds. */
  baseCacheDir: string;
  log: (line: string, stream?: "stdout" | "stderr") => void;
  /** Base images may come from loopback, link-local or private registries (default: BETA9_ALLOW_PRIVATE_REGISTRIES=1). */
  allowPrivateRegistries?: boolean;
  /** For a base pulled with credentials: their values (never logged, never written to disk). */
  credentials?: BuildCredentials;
  /** The unpacked directory of an uploaded object (copy steps); the worker's code cache. */
  fetchObject?: (hash: string) => Promise<string>;
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

type CommandStep = Exclude<ImageStep, { kind: "env" | "copy" }>;

/** The command of a step; package names were validated by the spec (no options, no quotes needed). */
export function stepCommand(step: CommandStep): string[] {
  switch (step.kind) {
    case "shell":
      return ["/bin/sh", "-c", step.command];
    case "exec":
      return step.argv;
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
  switch (step.kind) {
    case "shell": return `shell: ${step.command.slice(0, 80)}`;
    case "exec": return `exec: ${JSON.stringify(step.argv).slice(0, 80)}`;
    case "env": return `env: ${Object.keys(step.vars).join(" ")}`;
    case "copy": return `copy: ${step.src.join(" ").slice(0, 60)} -> ${step.dest}`;
    default: return `${step.kind}: ${step.packages.join(" ")}`;
  }
}

/** Where the credentials came from, for messages: the secret names, never the values. */
function credentialsLabel(spec: ImageSpec): string {
  const names = credentialSecretNames(spec);
  return names.length === 1 ? `secret ${names[0]}` : `secrets ${names.join("/")}`;
}

/** Pulls the registry base; auth failures carry their catalogue code, so the image's error does too. */
async function pullBase(spec: ImageSpec & { base: { kind: "registry" } }, dir: string, o: BuildOptions) {
  const ref = parseImageRef(spec.base.ref);
  const names = credentialSecretNames(spec);
  if (names.length > 0 && !o.credentials) throw new Error(`the gateway sent no values for ${credentialsLabel(spec)}`);
  const credentials: RegistryCredentialValues | undefined = o.credentials && { ...o.credentials, label: credentialsLabel(spec) };
  const client = new RegistryClient({
    ...(o.allowPrivateRegistries !== undefined && { allowPrivate: o.allowPrivateRegistries }),
    ...(credentials && { auth: { registry: ref.registry, credentials } }),
  });
  try {
    return await client.pull(ref, join(dir, "blobs"));
  } catch (err) {
    if (err instanceof RegistryError && err.code === "AUTH_FAILED") throw new Error(`REGISTRY_AUTH_FAILED: ${err.message}`);
    if (err instanceof RegistryError && err.code === "AUTH_REQUIRED") throw new Error(`REGISTRY_AUTH_REQUIRED: ${err.message}`);
    throw err;
  } finally {
    await client.close();
  }
}

/** What a registry base's config says to run (ENTRYPOINT + CMD) and where: what a pod without an entrypoint runs. */
interface BaseCommand {
  command?: string[];
  workdir?: string;
}

/** Base rootfs and the env its config declares. */
async function prepareBase(spec: ImageSpec, dir: string, o: BuildOptions): Promise<{ rootfs: string; env: Record<string, string> } & BaseCommand> {
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
  if (spec.base.kind !== "registry") throw new Error(`a normalized spec has no ${spec.base.kind} base`);
  o.log(`base: pulling ${spec.base.ref}${spec.base.credentials ? ` with ${credentialsLabel(spec)}` : ""}`);
  const pulled = await pullBase(spec as ImageSpec & { base: { kind: "registry" } }, dir, o);
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
  const declared = pulled.config.config;
  // The registry's config is the image author's JSON: only arrays of strings are taken.
  const words = (v: unknown): string[] => (Array.isArray(v) ? v.filter((a): a is string => typeof a === "string") : []);
  const command = [...words(declared?.Entrypoint), ...words(declared?.Cmd)];
  return { rootfs, env, ...(command.length > 0 && { command }), ...(typeof declared?.WorkingDir === "string" && declared.WorkingDir.startsWith("/") && { workdir: declared.WorkingDir }) };
}

async function runStep(step: CommandStep, label: string, lowerDirs: string[], upperDir: string, env: Record<string, string>, o: BuildOptions, user?: ImageUser) {
  const tail: string[] = [];
  const workdir = "workdir" in step ? step.workdir : undefined;
  const handle = await o.runtime.start({
    id: `build-${randomBytes(6).toString("hex")}`,
    lowerDirs, upperDir, command: stepCommand(step), env: { ...env, HOME: user?.home ?? (user ? "/" : "/root") },
    ...(workdir && { workdir }), ...(user && { user: { uid: user.uid, gid: user.gid } }),
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

/** USER names are looked up in the image as it is before the step (a throwaway upper layer). */
async function findUser(dir: string, layers: string[], user: string): Promise<ImageUser> {
  const upper = join(dir, `lookup-${randomBytes(4).toString("hex")}`);
  try {
    return await withOverlay(dir, layers, upper, (root) => lookupUser(root, user));
  } finally {
    await rm(upper, { recursive: true, force: true });
  }
}

/** One step onto `layers`: its new layer (if it made one) and the environment after it. */
async function applyStep(step: ImageStep, label: string, dir: string, layers: string[], upper: string, env: Record<string, string>, spec: ImageSpec, o: BuildOptions): Promise<boolean> {
  o.log(`${label}: ${describeStep(step)}`);
  if (step.kind === "env") {
    // Expanded against the environment so far, so `PATH=/opt/bin:${PATH}` extends the base's PATH.
    const expanded = Object.fromEntries(Object.entries(step.vars).map(([k, v]) => [k, expandEnvValue(v, env)]));
    Object.assign(env, expanded);
    return false;
  }
  try {
    if (step.kind === "copy") {
      if (!o.fetchObject) throw new Error("this worker cannot fetch uploaded files");
      const files = await o.fetchObject(step.object);
      const copied = await withOverlay(dir, layers, upper, (root) => copyIntoImage(root, files, step, dir));
      o.log(`${label}: copied ${copied} path${copied === 1 ? "" : "s"}`);
      return true;
    }
    const user = "user" in step && step.user ? await findUser(dir, layers, step.user) : undefined;
    const stepEnv = { ...env, ...("env" in step && step.env), ...spec.env };
    await runStep(step, label, layers, upper, stepEnv, o, user);
    return true;
  } catch (err) {
    if (err instanceof BuildStepError || !(err instanceof Error)) throw err;
    throw new BuildStepError(`${label} (${describeStep(step)}) failed: ${err.message}`);
  }
}

export async function buildImage(imageId: string, specInput: unknown, o: BuildOptions): Promise<BuiltImage> {
  const spec = normalizeImageSpec(specInput);
  const dir = join(o.workDir, `${imageId}-${randomBytes(4).toString("hex")}`);
  const merged = join(dir, "merged");
  let mounted = false;
  const cleanup = async () => {
    if (mounted) await run("umount", [merged]).catch(() => undefined);
    mounted = false;
    // A step's overlay is unmounted when it ends; a crash in between must not make rm walk into one.
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir(dir, { recursive: true });
    const base = await prepareBase(spec, dir, o);
    const stepEnv = { ...base.env };
    const layers = [base.rootfs];
    for (const [i, step] of spec.steps.entries()) {
      const upper = join(dir, `layer-${i}`);
      if (await applyStep(step, `step ${i + 1}/${spec.steps.length}`, dir, layers, upper, stepEnv, spec, o)) layers.push(upper);
    }
    const env = { ...stepEnv, ...spec.env };
    // The image's own metadata travels inside it: the worker reads the env when it runs it.
    const meta = join(dir, "meta");
    await mkdir(join(meta, ".beta9"), { recursive: true });
    await writeFile(join(meta, ".beta9", "image.json"), `${JSON.stringify({ id: imageId, env, spec, ...(base.command && { command: base.command }), ...(base.workdir && { workdir: base.workdir }) }, null, 2)}\n`);
    layers.push(meta);
    await mkdir(merged);
    // A read-only overlay of all layers is the image as containers will see it (whiteouts applied).
    await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${[...layers].reverse().join(":")},ro,nosuid,nodev`, merged]);
    mounted = true;
    o.log("packing (squashfs, zstd)");
    const packed = await packRootfs(merged, join(dir, "image.sqfs"));
    await run("umount", [merged]);
    mounted = false;
    o.log(`packed ${(packed.bytes / 1_048_576).toFixed(1)} MiB in ${Math.round(packed.ms)} ms`);
    return { path: packed.path, bytes: packed.bytes, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
