/**
 * Module resolve hook (registered by sdk-fallback.ts, runs on Node's loader thread): an
 * `import "beta9"` that finds no package from the importing file resolves to the CLI's own SDK.
 * Everything else, and every "beta9" that does resolve, is left to the rest of the chain.
 */
import type { InitializeHook, ResolveHook } from "node:module";
import type { MessagePort } from "node:worker_threads";

let fallbackParent = "";
let port: MessagePort | undefined;

export const initialize: InitializeHook<{ parentURL: string; port: MessagePort }> = (data) => {
  fallbackParent = data.parentURL;
  port = data.port;
};

export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  // Read first: the chain may write the parent it was given into this same context.
  const importer = context.parentURL;
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    if (specifier !== "beta9" || (err as { code?: unknown }).code !== "ERR_MODULE_NOT_FOUND") throw err;
    const found = await nextResolve(specifier, { ...context, parentURL: fallbackParent });
    port?.postMessage({ importer });
    return found;
  }
};
