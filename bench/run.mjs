// `npm run bench`: runs every benchmark (or those named: `npm run bench -- gateway`), prints
// each against its floor measured in the same run, and writes bench/results/latest.json.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => f.endsWith(".bench.mjs") && (wanted.length === 0 || wanted.some((w) => f.startsWith(w))));
const results = [];
for (const file of files.sort()) {
  const { run } = await import(`./${file}`);
  const result = await run();
  result.print();
  const { print, ...data } = result;
  results.push({ file, ...data });
}
mkdirSync(`${dir}/results`, { recursive: true });
writeFileSync(`${dir}/results/latest.json`, `${JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2)}\n`);
