#!/usr/bin/env node
// Bundles the dashboard (src/main.tsx and src/styles.css) with esbuild into dist/: content-hashed
// app-<hash>.js and app-<hash>.css, and an index.html naming them. Skips the work when dist is
// newer than every source. Prints raw and gzipped sizes with --report.
import { build } from "esbuild";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
const out = join(here, "dist");
const index = join(out, "index.html");
const report = process.argv.includes("--report");

const newest = (dir) => Math.max(...readdirSync(dir, { recursive: true }).map((f) => statSync(join(dir, String(f))).mtimeMs), statSync(fileURLToPath(import.meta.url)).mtimeMs);
if (!process.argv.includes("--force") && existsSync(index) && statSync(index).mtimeMs >= newest(src) && !report) process.exit(0);

// Old bundles go; dist/types (tsc -b's type check of this package, tsconfig.json) stays.
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) if (f !== "types") rmSync(join(out, f), { recursive: true, force: true });
const result = await build({
  entryPoints: { app: join(src, "main.tsx"), style: join(src, "styles.css") },
  bundle: true, minify: true, format: "esm", target: ["chrome110", "firefox115", "safari16"],
  jsx: "automatic", jsxImportSource: "preact", outdir: out, entryNames: "[name]-[hash]", metafile: true,
  legalComments: "none", logLevel: "warning", define: { "process.env.NODE_ENV": '"production"' },
});
const files = Object.keys(result.metafile.outputs).map((p) => p.split("/").pop());
const js = files.find((f) => f.startsWith("app-") && f.endsWith(".js"));
const css = files.find((f) => f.startsWith("style-") && f.endsWith(".css"));
writeFileSync(index, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>beta9</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/${css}">
<script type="module" src="/dashboard/${js}"></script>
</head>
<body><div id="app"></div><noscript>The beta9 dashboard needs JavaScript.</noscript></body>
</html>
`);
if (report) {
  let raw = 0;
  let gz = 0;
  for (const f of readdirSync(out)) {
    if (f === "types") continue;
    const body = readFileSync(join(out, f));
    raw += body.length;
    gz += gzipSync(body, { level: 9 }).length;
    console.log(`${f.padEnd(28)} ${String(body.length).padStart(7)} B  gzip ${String(gzipSync(body, { level: 9 }).length).padStart(6)} B`);
  }
  console.log(`${"total".padEnd(28)} ${String(raw).padStart(7)} B  gzip ${String(gz).padStart(6)} B`);
}
