/**
 * Code sync: bundles the user's entry file and everything it imports into one ES module
 * (esbuild; node built-ins stay external), packs it as a deterministic tar.gz, and names it by
 * sha256, so unchanged code is never uploaded twice. The CLI (`beta9 deploy`, `beta9 serve`) and
 * `workload.deploy()` / `.serve()` from code all come through here.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { WORKLOAD_MARKER } from "@beta9/protocol";

export interface CodeBundle {
  bytes: Buffer;
  sha256: string;
  /** The handler reference inside the bundle, e.g. "main.js:classify". */
  handler: string;
  /** The project's source files that went into it (absolute; no node_modules): what serve watches. */
  inputs: string[];
}

/** Bundling failed (a syntax error, an import that does not resolve, esbuild missing). */
export class BundleError extends Error {
  readonly code = "BUNDLE_FAILED";
  constructor(message: string) {
    super(message);
    this.name = "BundleError";
  }
}

/** Which export holds the workload: by name, or (from code, where no name is known) by kind and workload name. */
export type ExportRef = string | { kind: string; name: string };

/**
 * Inside this repository the SDK and protocol resolve to packages/*: not the user's project, so
 * not watched (elsewhere they sit in node_modules, which is skipped anyway).
 */
const OWN_PACKAGES = (() => {
  try {
    const packages = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
    return basename(packages) === "packages" ? packages + sep : undefined;
  } catch {
    return undefined; // bundled into a container: import.meta.url is the bundle
  }
})();

/**
 * `import "beta9"` from a project that has no beta9 installed (a file run with a checkout's CLI,
 * or outside any project) bundles this SDK, the one deploying it, instead of failing to resolve.
 * The CLI loads such files the same way (packages/cli sdk-fallback.ts).
 */
const ownSdkFallback: import("esbuild").Plugin = {
  name: "beta9-own-sdk",
  setup(build) {
    const retry = Symbol("beta9-own-sdk");
    build.onResolve({ filter: /^beta9$/ }, async (args) => {
      if (args.pluginData === retry) return undefined;
      const found = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: retry });
      // Resolves from the project: esbuild's own resolution goes on as if this plugin were not here.
      if (found.errors.length === 0) return undefined;
      return { path: fileURLToPath(new URL("./index.js", import.meta.url)) };
    });
  },
};

/** The bundle's own export when the workload is found by kind and name. */
const FOUND_EXPORT = "__beta9Found";

export async function bundleCode(entryFile: string, ref: ExportRef): Promise<CodeBundle> {
  // A variable specifier: code bundled for containers (which includes this SDK) never tries to
  // bundle esbuild itself; only deploying needs it.
  const esbuildName = "esbuild";
  let build: typeof import("esbuild").build;
  try {
    ({ build } = (await import(esbuildName)) as typeof import("esbuild"));
  } catch {
    throw new BundleError("esbuild is not installed; deploying from code needs it (npm install esbuild)");
  }
  const dir = mkdtempSync(join(tmpdir(), "beta9-bundle-"));
  const file = resolve(entryFile);
  try {
    const entry = typeof ref === "string" ? { entryPoints: [file] } : {
      // No export name from code: a small entry finds the workload among the module's exports.
      stdin: {
        contents: `import * as m from ${JSON.stringify(file)};
const found = Object.values(m).find((v) => v && v[${JSON.stringify(WORKLOAD_MARKER)}] === true && v.kind === ${JSON.stringify(ref.kind)} && v.name === ${JSON.stringify(ref.name)});
if (!found) throw new Error(${JSON.stringify(`${file} exports no ${ref.kind} named ${ref.name}: export the workload you deploy`)});
export const ${FOUND_EXPORT} = found;
`,
        resolveDir: dirname(file), sourcefile: "beta9-entry.js", loader: "js" as const,
      },
    };
    let metafile;
    try {
      ({ metafile } = await build({
        ...entry, outfile: join(dir, "main.js"), bundle: true, platform: "node", format: "esm", target: "node20",
        logLevel: "silent", legalComments: "none", metafile: true, plugins: [ownSdkFallback],
        // A map without the sources' text, so a handler's stack names the user's file and line.
        sourcemap: "linked", sourcesContent: false,
        // CommonJS dependencies inside an ES module bundle still call require().
        banner: { js: 'import { createRequire as __beta9CreateRequire } from "node:module"; const require = __beta9CreateRequire(import.meta.url);' },
      }));
    } catch (err) {
      throw new BundleError(`cannot bundle ${file}: ${(err as Error).message}`);
    }
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    relativeSourceMap(join(dir, "main.js.map"), dir, dirname(file));
    // Fixed order, owners and times: the same code gives the same bytes and the same hash.
    execFileSync("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf", join(dir, "code.tar"), "-C", dir, "main.js", "main.js.map", "package.json"]);
    const bytes = gzipSync(readFileSync(join(dir, "code.tar")), { level: 6 });
    const inputs = Object.keys(metafile?.inputs ?? {})
      .filter((p) => !p.includes("node_modules/") && !p.startsWith("<") && !p.includes(":"))
      .map((p) => resolve(p))
      .filter((p) => OWN_PACKAGES === undefined || !p.startsWith(OWN_PACKAGES));
    return {
      bytes, sha256: createHash("sha256").update(bytes).digest("hex"),
      handler: `main.js:${typeof ref === "string" ? ref : FOUND_EXPORT}`, inputs: [...new Set([file, ...inputs])],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * esbuild names sources relative to the temporary build dir; rename them relative to the
 * workload's own directory, so stacks read `app.ts:12` in the container and the bundle's bytes
 * (its hash) do not depend on where it was built.
 */
function relativeSourceMap(mapFile: string, buildDir: string, projectDir: string): void {
  const map = JSON.parse(readFileSync(mapFile, "utf8")) as { sources?: string[] };
  map.sources = (map.sources ?? []).map((s) => relative(projectDir, resolve(buildDir, s)).split(sep).join("/"));
  writeFileSync(mapFile, JSON.stringify(map));
}
