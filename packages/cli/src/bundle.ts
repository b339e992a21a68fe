/**
 * Code sync: bundles the user's entry file and everything it imports into one ES module
 * (esbuild; node built-ins stay external), packs it as a deterministic tar.gz, and names it by
 * sha256, so unchanged code is never uploaded twice.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { CliError } from "./errors.js";

export interface CodeBundle {
  bytes: Buffer;
  sha256: string;
  /** The handler reference inside the bundle, e.g. "main.js:classify". */
  handler: string;
}

export async function bundleCode(entryFile: string, exportName: string): Promise<CodeBundle> {
  const { build } = await import("esbuild");
  const dir = mkdtempSync(join(tmpdir(), "beta9-bundle-"));
  try {
    try {
      await build({
        entryPoints: [entryFile], outfile: join(dir, "main.js"), bundle: true, platform: "node", format: "esm", target: "node20",
        logLevel: "silent", legalComments: "none",
        // CommonJS dependencies inside an ES module bundle still call require().
        banner: { js: 'import { createRequire as __beta9CreateRequire } from "node:module"; const require = __beta9CreateRequire(import.meta.url);' },
      });
    } catch (err) {
      throw new CliError("BUNDLE_FAILED", `cannot bundle ${entryFile}: ${(err as Error).message}`);
    }
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    // Fixed order, owners and times: the same code gives the same bytes and the same hash.
    execFileSync("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf", join(dir, "code.tar"), "-C", dir, "main.js", "package.json"]);
    const bytes = gzipSync(readFileSync(join(dir, "code.tar")), { level: 6 });
    return { bytes, sha256: createHash("sha256").update(bytes).digest("hex"), handler: `main.js:${exportName}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
