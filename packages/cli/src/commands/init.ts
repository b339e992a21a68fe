/**
 * `beta9 init [DIR]`: a project of one's own, anywhere. It writes a template (init-template.ts)
 * whose "beta9" dependency is the packed SDK + CLI tarball (scripts/pack.mjs), never a registry
 * name: @beta9/protocol is bundled inside it, so npm fetches only public dependencies.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { CliError, EXIT } from "../errors.js";
import { projectName, TEMPLATE_EXPORT, templateFiles } from "../init-template.js";
import { color, note, print } from "../output.js";

interface InitOptions {
  force?: boolean;
  install: boolean;
  sdk?: string;
}

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("start a project of your own: package.json, tsconfig.json and an example endpoint in app.ts, with beta9 as its dependency")
    .argument("[dir]", "where to write it (made if missing)", ".")
    .option("--force", "overwrite files that are already there")
    .option("--no-install", "do not run npm install afterwards")
    .option("--sdk <path>", "the beta9 package the project depends on (a beta9-*.tgz from npm run pack, or a directory); default: this checkout's tarball, packed when missing or older than the build")
    .addHelpText(
      "after",
      `
Then: cd DIR && npx beta9 deploy app.ts:${TEMPLATE_EXPORT} (against your current context, or BETA9_GATEWAY and BETA9_TOKEN).`,
    )
    .action((dir: string, opts: InitOptions) => init(dir, opts));
}

async function init(dir: string, opts: InitOptions): Promise<void> {
  const target = resolve(dir);
  const name = projectName(basename(target));
  const files = templateFiles(name, "");
  const existing = Object.keys(files).filter((file) => existsSync(join(target, file)));
  if (existing.length > 0 && !opts.force) {
    throw new CliError("FILE_EXISTS", `${existing.join(", ")} already ${existing.length === 1 ? "exists" : "exist"} in ${target}; pass --force to overwrite`, EXIT.usage);
  }
  const sdk = sdkPackage(opts.sdk);
  mkdirSync(target, { recursive: true });
  for (const [file, text] of Object.entries(templateFiles(name, `file:${sdk}`))) writeFileSync(join(target, file), text);
  print(`${color.green("wrote")} ${Object.keys(files).join(", ")} in ${target} (beta9 from ${sdk})`);

  const cd = dir === "." ? "" : `cd ${shellQuote(dir)} && `;
  if (opts.install) {
    note(color.dim(`npm install in ${target}`));
    await npmInstall(target);
    print(`next: ${cd}npx beta9 deploy app.ts:${TEMPLATE_EXPORT}`);
  } else {
    print(`next: ${cd}npm install && npx beta9 deploy app.ts:${TEMPLATE_EXPORT}`);
  }
  print(color.dim("(it deploys to the gateway of your current context: beta9 up saves one; or set BETA9_GATEWAY and BETA9_TOKEN)"));
}

/** The tarball (or directory) to depend on, as an absolute path. */
function sdkPackage(given: string | undefined): string {
  if (given !== undefined) {
    const path = resolve(given);
    if (!existsSync(path)) throw new CliError("FILE_NOT_FOUND", `--sdk ${given}: ${path} does not exist (npm run pack in a beta9-ts checkout makes dist-pack/beta9-*.tgz)`, EXIT.usage);
    return path;
  }
  const root = checkoutRoot();
  if (root) return checkoutTarball(root);
  const installedFrom = installedTarball();
  if (installedFrom) return installedFrom;
  throw new CliError(
    "USAGE",
    "this beta9 does not run from a source checkout and its tarball is not known: pass --sdk PATH (the beta9-*.tgz it was installed from; npm run pack in a checkout makes one)",
    EXIT.usage,
  );
}

/** The checkout this CLI runs from (packages/cli/dist/commands/init.js in it), if any. */
function checkoutRoot(): string | undefined {
  const root = fileURLToPath(new URL("../../../../", import.meta.url));
  return existsSync(join(root, "scripts", "pack.mjs")) && existsSync(join(root, "packages", "sdk", "package.json")) ? root : undefined;
}

/**
 * dist-pack/beta9-<version>.tgz of the checkout, packed first when it is missing or older than
 * what it packs. It packs the built dist folders, the ones this CLI runs from, without building.
 */
function checkoutTarball(root: string): string {
  const { version } = JSON.parse(readFileSync(join(root, "packages", "sdk", "package.json"), "utf8")) as { version: string };
  const tarball = join(root, "dist-pack", `beta9-${version}.tgz`);
  const sources = [
    ...["sdk", "protocol", "cli"].map((p) => join(root, "packages", p, "dist")),
    join(root, "sdk", "python", "beta9"), join(root, "sdk", "python", "beam"), join(root, "scripts", "pack.mjs"),
  ];
  if (existsSync(tarball) && newestChange(sources) <= statSync(tarball).mtimeMs) return tarball;
  note(color.dim(`packing the SDK and CLI: ${tarball}`));
  const packed = spawnSync(process.execPath, [join(root, "scripts", "pack.mjs"), "--no-build"], { stdio: ["ignore", 2, 2] });
  if (packed.status !== 0 || !existsSync(tarball)) {
    throw new CliError("PACK_FAILED", `npm run pack failed in ${root} (${packed.error?.message ?? `exit ${packed.status}`}); its output is above`);
  }
  return tarball;
}

function newestChange(paths: string[]): number {
  let newest = 0;
  for (const path of paths) {
    if (!existsSync(path)) continue;
    const stat = statSync(path);
    newest = Math.max(newest, stat.mtimeMs);
    if (!stat.isDirectory()) continue;
    for (const entry of readdirSync(path, { recursive: true })) newest = Math.max(newest, statSync(join(path, String(entry))).mtimeMs);
  }
  return newest;
}

/**
 * Installed in a project (node_modules/beta9/cli/commands/init.js): the tarball npm installed it
 * from, as npm recorded it in node_modules/.package-lock.json, while it is still there.
 */
function installedTarball(): string | undefined {
  const packageDir = fileURLToPath(new URL("../../", import.meta.url));
  try {
    const lock = JSON.parse(readFileSync(join(packageDir, "..", ".package-lock.json"), "utf8")) as { packages?: Record<string, { resolved?: string }> };
    const resolved = lock.packages?.["node_modules/beta9"]?.resolved;
    if (!resolved?.startsWith("file:")) return undefined;
    const path = resolve(packageDir, "..", "..", resolved.slice("file:".length));
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** npm install with its own progress on stderr (stdout stays this command's). */
function npmInstall(dir: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("npm", ["install", "--no-audit", "--no-fund"], { cwd: dir, stdio: ["ignore", 2, 2] });
    child.on("error", (err) => reject(new CliError("NPM_NOT_FOUND", `cannot run npm (${err.message}); install Node.js with npm, then run npm install in ${dir}`)));
    child.on("exit", (code, signal) => {
      if (code === 0) return resolvePromise();
      reject(new CliError("NPM_INSTALL_FAILED", `npm install in ${dir} failed (${signal ?? `exit ${code}`}); its output is above. Fix that and run npm install there again`));
    });
  });
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9/._-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}
