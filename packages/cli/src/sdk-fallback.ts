/**
 * A workload file whose project has no beta9 installed (`./beta9 deploy /elsewhere/app.ts` from a
 * checkout, a file outside any project) still loads: its `import "beta9"` resolves to this CLI's
 * own SDK, with a note saying so, rather than failing with "Cannot find module 'beta9'". The
 * bundler does the same on its side (packages/sdk workloads-bundle.ts).
 *
 * tsx loads a .ts file as an ES module (a package.json with "type": "module" above it) or as
 * CommonJS (none: e.g. a lone file): the first resolves through a module hook
 * (sdk-fallback-hooks.ts), the second through require's resolver, so both are covered.
 */
import { createRequire, register } from "node:module";
import { fileURLToPath } from "node:url";
import { MessageChannel } from "node:worker_threads";
import * as ownSdk from "beta9";
import { note } from "./output.js";

const require = createRequire(import.meta.url);
let registered = false;
const noted = new Set<string>();

function noteFallback(importer: string): void {
  if (noted.has(importer)) return;
  noted.add(importer);
  note(`note: no beta9 package is installed for ${importer}; it uses this CLI's own SDK. ` +
    "For types and editor help, install beta9 in its project (see beta9 init --help).");
}

/** Registers the fallback (once per process) unless `beta9` resolves from `file` as it is. */
export function resolveSdkFor(file: string): void {
  if (registered || sdkResolvesFrom(file)) return;
  registered = true;

  const { port1, port2 } = new MessageChannel();
  port1.on("message", ({ importer }: { importer?: string }) =>
    noteFallback(importer?.startsWith("file:") ? fileURLToPath(importer) : importer ?? "your code"));
  port1.unref(); // the note must never keep the CLI running
  register(new URL("./sdk-fallback-hooks.js", import.meta.url), { data: { parentURL: import.meta.url, port: port2 }, transferList: [port2] });

  // require's resolver and cache are internal but stable. A failed "beta9" is redirected to a
  // cache entry holding the SDK this CLI already loaded: loading its files a second time, through
  // tsx's CommonJS loader, would make second copies of its dependencies (undici refuses that).
  type Resolve = (request: string, parent: { filename?: string | null } | undefined, ...rest: unknown[]) => string;
  const Module = require("node:module") as { _resolveFilename: Resolve; _cache: Record<string, unknown> };
  const original = Module._resolveFilename;
  // Not a path: tsx leaves it as it is (it adds its namespace to absolute paths, missing the cache).
  const cacheKey = "beta9:own-sdk";
  Module._cache[cacheKey] = { id: cacheKey, filename: cacheKey, loaded: true, exports: ownSdk, children: [], paths: [] };
  Module._resolveFilename = function (this: unknown, request, parent, ...rest) {
    try {
      return original.call(this, request, parent, ...rest);
    } catch (err) {
      if (request !== "beta9" || (err as { code?: unknown }).code !== "MODULE_NOT_FOUND") throw err;
      noteFallback(parent?.filename?.replace(/\?.*$/, "") ?? "your code");
      return cacheKey;
    }
  };
}

function sdkResolvesFrom(file: string): boolean {
  try {
    createRequire(file).resolve("beta9");
    return true;
  } catch {
    return false;
  }
}
