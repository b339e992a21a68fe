/**
 * Loads `file.ts:exportName` from the user's project (TypeScript or JavaScript) the way the
 * user's own code would see it: imports resolve from the file's directory.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CliError, EXIT } from "./errors.js";
import { resolveSdkFor } from "./sdk-fallback.js";

export function parseTarget(target: string): { file: string; name: string } {
  const colon = target.lastIndexOf(":");
  const file = colon > 0 ? target.slice(0, colon) : target;
  const name = colon > 0 ? target.slice(colon + 1) : "default";
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name)) {
    throw new CliError("USAGE", `"${name}" is not an export name; write FILE:EXPORT, e.g. app.ts:image`, EXIT.usage);
  }
  return { file: resolve(file), name };
}

export async function loadExport(target: string): Promise<unknown> {
  const { file, name } = parseTarget(target);
  if (!existsSync(file)) throw new CliError("FILE_NOT_FOUND", `${file} does not exist`, EXIT.notFound);
  resolveSdkFor(file);
  const { tsImport } = await import("tsx/esm/api");
  let module: Record<string, unknown>;
  try {
    module = (await tsImport(pathToFileURL(file).href, import.meta.url)) as Record<string, unknown>;
  } catch (err) {
    throw new CliError("LOAD_FAILED", `cannot load ${file}: ${(err as Error).message}`);
  }
  if (!(name in module)) {
    const names = Object.keys(module).filter((k) => k !== "__esModule");
    throw new CliError("EXPORT_NOT_FOUND", `${file} has no export "${name}"; it exports: ${names.join(", ") || "(nothing)"}`, EXIT.notFound);
  }
  return module[name];
}
