import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CliError } from "./errors.js";
import { loadExport, parseTarget } from "./load-export.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-load-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("loads the example Image from TypeScript and gives its canonical spec", async () => {
  const image = (await loadExport(join(repoRoot, "examples/image.ts:image"))) as { toSpec(): { base: unknown; steps: unknown[]; env: Record<string, string> }; id: string };
  const spec = image.toSpec();
  assert.deepEqual(spec.base, { kind: "default" });
  assert.equal(spec.steps.length, 1);
  assert.equal(spec.env.APP_MODE, "example");
  assert.match(image.id, /^[a-f0-9]{32}$/);
});

test("a missing file, a missing export and a bad export name are clear CLI errors", async () => {
  const file = join(dir, "mod.ts");
  writeFileSync(file, "export const a: number = 1;\nexport const b = 'x';\n");
  await assert.rejects(loadExport(join(dir, "nope.ts:x")), (e: unknown) => e instanceof CliError && e.code === "FILE_NOT_FOUND" && e.exitCode === 4);
  await assert.rejects(loadExport(`${file}:c`), (e: unknown) => e instanceof CliError && e.code === "EXPORT_NOT_FOUND" && /exports: a, b/.test(e.message));
  assert.throws(() => parseTarget(`${file}:not-a-name`), (e: unknown) => e instanceof CliError && e.exitCode === 2);
  writeFileSync(join(dir, "broken.ts"), "export const = ;\n");
  await assert.rejects(loadExport(join(dir, "broken.ts:x")), (e: unknown) => e instanceof CliError && e.code === "LOAD_FAILED");
  assert.equal(await loadExport(`${file}:a`), 1);
});
