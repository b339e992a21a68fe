#!/usr/bin/env node
// `npm run pack`: the SDK and the client CLI as one self-contained tarball,
// dist-pack/beta9-<version>.tgz, that `npm install <tarball>` installs in any project:
// `import { endpoint } from "beta9"` (with types) and `npx beta9 deploy …`.
//
// What it holds (package "beta9"):
//   dist/                           the SDK (packages/sdk/dist: .js and .d.ts)
//   cli/                            the CLI (packages/cli/dist); bin "beta9" is cli/main.js
//   python/                         the Python SDK the CLI asks to describe .py workloads
//   node_modules/@beta9/protocol    bundled (bundleDependencies): it is not on the npm registry,
//                                   and a name fetched from there could be anyone's
// and, as ordinary dependencies, the registry packages these import.
//
// The CLI sits inside package "beta9" rather than as a bundled @beta9/cli: its `import "beta9"`
// is then a self-reference, which finds this same package however npm lays the tree out, so the
// CLI and the user's code share one copy of the SDK.
//
// The platform (gateway, worker, runner) is left out: the gateway needs better-sqlite3, compiled
// from source at install time (about a minute, and make/g++/python3), and a project only needs a
// client. `beta9 up` from the tarball says to run the platform from a checkout.
//
// Options: --out DIR (default dist-pack/); --no-build packs the dist folders as they are (the
// default first builds, as `npm run build` does). Prints the tarball's path as its last stdout line.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const say = (line) => process.stderr.write(`pack: ${line}\n`);
const readJson = (file) => JSON.parse(readFileSync(file, "utf8"));

const outFlag = process.argv.indexOf("--out");
const outDir = resolve(outFlag > 0 && process.argv[outFlag + 1] ? process.argv[outFlag + 1] : join(root, "dist-pack"));

/** Runs a step with its output on stderr; exits 1 (no stack trace) when it fails. */
function run(label, cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: ["ignore", 2, 2] });
  if (r.status !== 0) {
    say(`${label} failed (${r.error?.message ?? `exit ${r.status}`})`);
    process.exit(1);
  }
}

// Compiled output only: tests, source maps and (for the CLI) declarations stay behind.
const shipped = (keepTypes) => (src) => {
  const name = basename(src);
  if (name === "__pycache__" || name === "tests" || name.endsWith(".pyc")) return false;
  if (/\.test\.(js|d\.ts)$/.test(name) || name.endsWith(".map") || name.endsWith(".tsbuildinfo")) return false;
  if (!keepTypes && name.endsWith(".d.ts")) return false;
  return true;
};

if (!process.argv.includes("--no-build")) run("build", process.execPath, [join(root, "scripts", "ensure-built.mjs")], root);

const sdk = readJson(join(root, "packages", "sdk", "package.json"));
const protocol = readJson(join(root, "packages", "protocol", "package.json"));
const cli = readJson(join(root, "packages", "cli", "package.json"));

// The registry packages the shipped code imports. pino (logs of up/gateway/worker) and the
// platform packages are not shipped; workspace names never become registry dependencies.
const notShipped = new Set(["pino", "@beta9/gateway", "@beta9/worker", "@beta9/runner", "@beta9/protocol", "beta9"]);
const dependencies = {};
for (const pkg of [protocol, sdk, cli]) {
  for (const [name, range] of Object.entries(pkg.dependencies ?? {})) {
    if (notShipped.has(name)) continue;
    if (dependencies[name] !== undefined && dependencies[name] !== range) {
      say(`${name} is wanted as ${dependencies[name]} and ${range}: make the workspaces agree`);
      process.exit(1);
    }
    dependencies[name] = range;
  }
}

mkdirSync(outDir, { recursive: true });
const stage = mkdtempSync(join(outDir, ".stage-"));
try {
  const pkgDir = join(stage, "beta9");
  cpSync(join(root, "packages", "sdk", "dist"), join(pkgDir, "dist"), { recursive: true, filter: shipped(true) });
  cpSync(join(root, "packages", "cli", "dist"), join(pkgDir, "cli"), { recursive: true, filter: shipped(false) });
  for (const py of ["beta9", "beam"]) {
    cpSync(join(root, "sdk", "python", py), join(pkgDir, "python", py), { recursive: true, filter: shipped(true) });
  }
  const protocolDir = join(pkgDir, "node_modules", "@beta9", "protocol");
  cpSync(join(root, "packages", "protocol", "dist"), join(protocolDir, "dist"), { recursive: true, filter: shipped(true) });
  const { devDependencies: _dev, ...protocolManifest } = protocol;
  writeFileSync(join(protocolDir, "package.json"), `${JSON.stringify(protocolManifest, null, 2)}\n`);

  const manifest = {
    name: sdk.name,
    version: sdk.version,
    // Never published: the tarball is installed by path (`npm install ./beta9-<version>.tgz`).
    private: true,
    type: "module",
    description: "beta9-ts SDK and the beta9 command (client): deploy and call workloads on your own beta9 platform",
    license: "Apache-2.0",
    engines: { node: ">=20.18" },
    exports: sdk.exports,
    types: sdk.types,
    bin: { beta9: "./cli/main.js" },
    files: ["dist", "cli", "python", "README.md"],
    dependencies: { "@beta9/protocol": protocol.version, ...dependencies },
    bundleDependencies: ["@beta9/protocol"],
  };
  writeFileSync(join(pkgDir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(pkgDir, "README.md"), `# beta9 ${sdk.version}

The beta9-ts SDK (\`import { endpoint, Image, schema } from "beta9"\`) and the \`beta9\` command for
client use (deploy, serve, run, task, deployment, config, …). The platform itself (\`beta9 up\`)
runs from a source checkout. Start a project with \`beta9 init DIR\` from the checkout.
`);

  const packed = spawnSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", stage], { cwd: pkgDir, encoding: "utf8", stdio: ["ignore", "pipe", 2] });
  if (packed.status !== 0) {
    say(`npm pack failed (${packed.error?.message ?? `exit ${packed.status}`})`);
    process.exit(1);
  }
  const [info] = JSON.parse(packed.stdout);
  const target = join(outDir, info.filename);
  // Renamed into place whole: a concurrent `beta9 init` never sees half a tarball.
  renameSync(join(stage, info.filename), target);
  say(`${info.filename}: ${info.entryCount} files, ${(statSync(target).size / 1024).toFixed(0)} KiB (bundled: ${info.bundled.join(", ")})`);
  process.stdout.write(`${target}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
