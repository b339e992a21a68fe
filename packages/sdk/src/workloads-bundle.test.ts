/** The bundler the CLI and deploy() share: same code, same hash; the workload found by kind and name; the inputs serve watches. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { bundleCode, BundleError } from "./workloads-bundle.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-bundle-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
writeFileSync(join(dir, "lib.ts"), "export const word: string = 'hi';\n");
writeFileSync(join(dir, "app.ts"), `import { word } from "./lib.ts";
export const thing = { __beta9Workload: true, kind: "endpoint", name: "thing", handler: () => word };
`);

async function load(bytes: Buffer, exportName: string): Promise<Record<string, unknown>> {
  const out = mkdtempSync(join(dir, "out-"));
  writeFileSync(join(out, "code.tar"), gunzipSync(bytes));
  execFileSync("tar", ["-xf", join(out, "code.tar"), "-C", out]);
  const module = (await import(join(out, "main.js"))) as Record<string, unknown>;
  return module[exportName] as Record<string, unknown>;
}

test("by export name and by kind and name: the same workload, a stable hash, the project files as inputs", async () => {
  const byName = await bundleCode(join(dir, "app.ts"), "thing");
  assert.equal(byName.handler, "main.js:thing");
  assert.equal((await bundleCode(join(dir, "app.ts"), "thing")).sha256, byName.sha256, "same code, same bytes");
  assert.deepEqual([...byName.inputs].sort(), [join(dir, "app.ts"), join(dir, "lib.ts")]);
  const found = await bundleCode(join(dir, "app.ts"), { kind: "endpoint", name: "thing" });
  assert.match(found.handler, /^main\.js:\w+$/);
  const workload = await load(found.bytes, found.handler.split(":")[1]!);
  assert.equal((workload.handler as () => string)(), "hi");
});

test("a workload the file does not export fails when the bundle loads, saying to export it; a syntax error is a BundleError", async () => {
  const missing = await bundleCode(join(dir, "app.ts"), { kind: "taskqueue", name: "thing" });
  await assert.rejects(load(missing.bytes, "x"), /exports no taskqueue named thing: export the workload you deploy/);
  writeFileSync(join(dir, "broken.ts"), "export const = ;\n");
  await assert.rejects(bundleCode(join(dir, "broken.ts"), "x"), (err: Error) => err instanceof BundleError && /cannot bundle/.test(err.message));
});
