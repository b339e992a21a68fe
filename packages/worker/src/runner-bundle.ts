/**
 * The runner bundle: the runner's code plus a Node runtime that needs nothing from the image —
 * the node binary, the shared libraries it links, and the dynamic loader — in one directory that
 * the worker mounts read-only at /beta9 in every workload container. Starting node through the
 * bundled loader (`/beta9/lib/ld-linux… --library-path /beta9/lib /beta9/bin/node`) makes it run
 * on any base image: Debian, Alpine (musl), distroless, or one with an older glibc.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";

export const RUNNER_MOUNT_PATH = "/beta9";

export interface RunnerBundle {
  /** Host directory to bind read-only at {@link RUNNER_MOUNT_PATH}. */
  dir: string;
  /** argv prefix that runs a script with the bundled node, e.g. [...nodeArgv, "/beta9/runner/main.js"]. */
  nodeArgv: string[];
  /** The runner's entry point inside the container. */
  runnerPath: string;
  /**
   * argv that starts the sandbox daemon inside the container: under the bundle's static init
   * (which reaps orphans) when a C compiler was there to build it, else node alone.
   */
  sandboxArgv: string[];
  /**
   * Where the Python SDK and runner (`beta9`, `beam`) sit inside the container: Python workloads
   * start as `python3 -m beta9.runner` with this on PYTHONPATH (the image brings python3).
   */
  pythonPath: string;
}

/** The Python SDK's source: sdk/python in this repository (or BETA9_PYTHON_SDK_DIR). */
export function pythonSdkDir(): string | undefined {
  const dir = process.env.BETA9_PYTHON_SDK_DIR || join(runnerDistDir(), "..", "..", "..", "sdk", "python");
  return existsSync(join(dir, "beta9", "__init__.py")) ? dir : undefined;
}

/** The Python files of the SDK packages, relative to the SDK dir, sorted (no tests, no caches). */
function pythonFiles(sdkDir: string | undefined): string[] {
  if (!sdkDir) return [];
  const out: string[] = [];
  for (const pkg of ["beta9", "beam"]) {
    for (const entry of readdirSync(join(sdkDir, pkg), { recursive: true }).map(String)) {
      if ((entry.endsWith(".py") || entry.endsWith("py.typed")) && !entry.includes("__pycache__")) out.push(join(pkg, entry));
    }
  }
  return out.sort();
}

interface SharedObjects {
  loader: string;
  libraries: string[];
}

/** Parses `ldd <node>`: the loader and every library it resolves (vdso has no file). */
export function parseLdd(output: string): SharedObjects {
  let loader: string | undefined;
  const libraries: string[] = [];
  for (const line of output.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const arrow = /^(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (arrow) libraries.push(arrow[2]!);
    else if (/^\/\S*ld-linux\S* \(0x[0-9a-f]+\)$/.test(line) || /^\/\S*ld-musl\S* \(0x[0-9a-f]+\)$/.test(line)) loader = line.split(" ")[0]!;
    else if (/=> not found/.test(line)) throw new Error(`node needs a library the host lacks: ${line}`);
  }
  if (!loader) throw new Error(`no dynamic loader in ldd output:\n${output}`);
  return { loader, libraries };
}

/** Hard link when on the same filesystem (instant, no space), else copy. */
function place(source: string, target: string): void {
  try {
    linkSync(source, target);
  } catch {
    copyFileSync(source, target);
  }
}

/** Whether `cc` can build a static binary here (the sandbox init); checked once. */
let compiler: boolean | undefined;
function hasCompiler(): boolean {
  if (compiler === undefined) {
    try {
      execFileSync("cc", ["--version"], { stdio: "ignore" });
      compiler = true;
    } catch {
      compiler = false;
    }
  }
  return compiler;
}

function runnerDistDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("@beta9/runner"));
}

/**
 * Builds the bundle once per (node binary, runner code) under `stateDir`; later calls return the
 * existing one. Built in a temp dir and renamed, so a crash never leaves half a bundle.
 */
export function ensureRunnerBundle(stateDir: string, nodePath = process.execPath): RunnerBundle {
  const node = realpathSync(nodePath);
  const distDir = runnerDistDir();
  // Tests compiled beside the runner are not part of it (and must not change the bundle's hash).
  const runnerFiles = readdirSync(distDir).filter((f) => f.endsWith(".js") && !f.endsWith(".test.js")).sort();
  const sandboxFiles = existsSync(join(distDir, "sandbox"))
    ? readdirSync(join(distDir, "sandbox")).filter((f) => f.endsWith(".js") && !f.endsWith(".test.js")).sort() : [];
  const initSource = join(distDir, "..", "src", "sandbox", "init.c");
  const canBuildInit = existsSync(initSource) && hasCompiler();
  const hash = createHash("sha256").update(node).update(String(process.version)).update(String(canBuildInit));
  for (const f of runnerFiles) hash.update(f).update(execFileSync("sha256sum", [join(distDir, f)]));
  for (const f of sandboxFiles) hash.update(`sandbox/${f}`).update(execFileSync("sha256sum", [join(distDir, "sandbox", f)]));
  if (canBuildInit) hash.update(execFileSync("sha256sum", [initSource]));
  const sdkDir = pythonSdkDir();
  const pyFiles = pythonFiles(sdkDir);
  for (const f of pyFiles) hash.update(`python/${f}`).update(readFileSync(join(sdkDir!, f)));
  const dir = join(stateDir, `runner-${hash.digest("hex").slice(0, 16)}`);
  const { loader, libraries } = parseLdd(execFileSync("ldd", [node], { encoding: "utf8" }));
  const bundle: RunnerBundle = {
    dir,
    nodeArgv: [`${RUNNER_MOUNT_PATH}/lib/${basename(loader)}`, "--library-path", `${RUNNER_MOUNT_PATH}/lib`, `${RUNNER_MOUNT_PATH}/bin/node`],
    runnerPath: `${RUNNER_MOUNT_PATH}/runner/main.js`,
    sandboxArgv: [],
    pythonPath: `${RUNNER_MOUNT_PATH}/python`,
  };
  const nodeSandbox = [...bundle.nodeArgv, `${RUNNER_MOUNT_PATH}/runner/sandbox/main.js`];
  // Whether the init is there is what the bundle holds, not what this process guessed.
  const withInit = (): RunnerBundle => ({
    ...bundle, sandboxArgv: existsSync(join(dir, "bin", "init")) ? [`${RUNNER_MOUNT_PATH}/bin/init`, ...nodeSandbox] : nodeSandbox,
  });
  if (existsSync(join(dir, ".complete"))) return withInit();

  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  for (const sub of ["bin", "lib", "runner"]) mkdirSync(join(tmp, sub), { recursive: true });
  place(node, join(tmp, "bin", "node"));
  for (const lib of [loader, ...libraries]) place(realpathSync(lib), join(tmp, "lib", basename(lib)));
  for (const f of runnerFiles) copyFileSync(join(distDir, f), join(tmp, "runner", f));
  if (sandboxFiles.length > 0) mkdirSync(join(tmp, "runner", "sandbox"));
  for (const f of sandboxFiles) copyFileSync(join(distDir, "sandbox", f), join(tmp, "runner", "sandbox", f));
  for (const f of pyFiles) {
    mkdirSync(dirname(join(tmp, "python", f)), { recursive: true });
    copyFileSync(join(sdkDir!, f), join(tmp, "python", f));
  }
  if (canBuildInit) {
    try {
      execFileSync("cc", ["-static", "-Os", "-o", join(tmp, "bin", "init"), initSource], { stdio: "pipe" });
    } catch {
      // No static libc (libc6-dev) here: sandboxes run without the reaping init (orphans stay zombies).
      rmSync(join(tmp, "bin", "init"), { force: true });
    }
  }
  // The runner is an ES module; without a package.json saying so, node would read it as CommonJS.
  writeFileSync(join(tmp, "runner", "package.json"), '{ "type": "module" }\n');
  writeFileSync(join(tmp, ".complete"), "");
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return withInit();
}
