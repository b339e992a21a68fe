/**
 * Loads the user's workload: imports BETA9_CODE_DIR/<file> and picks the named export, checking
 * it is something `endpoint(...)`, `taskQueue(...)`, `fn(...)` or `schedule(...)` returned.
 * Every failure becomes a LoadError whose message tells the user what to fix.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { WorkloadDescriptor } from "@beta9/protocol";
import { WORKLOAD_MARKER } from "./constants.js";
import type { HandlerRef } from "./env.js";

/** The workload could not be loaded or started; main prints the message and exits 1. */
export class LoadError extends Error {
  override name = "LoadError";
}

/** True for values carrying the workload marker and a handler function. */
export function isWorkload(value: unknown): value is WorkloadDescriptor {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return record[WORKLOAD_MARKER] === true && typeof record.handler === "function";
}

/**
 * A short description of an export for error messages.
 *
 * @example
 * describeValue(() => 1); // "a function (not wrapped in endpoint(), taskQueue(), fn() or schedule())"
 */
export function describeValue(value: unknown): string {
  if (isWorkload(value)) return `${value.kind} "${value.name}"`;
  if (typeof value === "function") return "a function (not wrapped in endpoint(), taskQueue(), fn() or schedule())";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const marker = (value as Record<string, unknown>)[WORKLOAD_MARKER] === true;
    return marker ? "an object marked as a workload but without a handler function" : "an object, not a workload";
  }
  return `a ${typeof value}`;
}

function listExports(module: Record<string, unknown>): string {
  const names = Object.keys(module);
  if (names.length === 0) return "it exports nothing";
  return `it exports: ${names.map((n) => `${n} (${describeValue(module[n])})`).join(", ")}`;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

/**
 * Imports `ref.file` from `codeDir` and returns its `ref.exportName` export, which must be a workload.
 *
 * @example
 * const workload = await loadWorkload("/app", { file: "app.js", exportName: "predict" });
 */
export async function loadWorkload(codeDir: string, ref: HandlerRef): Promise<WorkloadDescriptor> {
  const path = join(codeDir, ref.file);
  const where = `${ref.file}:${ref.exportName}`;
  if (!existsSync(path)) {
    throw new LoadError(`cannot load ${where}: ${path} does not exist (BETA9_CODE_DIR=${codeDir})`);
  }
  let module: Record<string, unknown>;
  try {
    // Bundles carry a source map (main.js.map): stacks then name the user's file and line.
    process.setSourceMapsEnabled(true);
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new LoadError(`cannot load ${where}: importing ${path} failed:\n${errorText(err)}`);
  }
  if (!Object.prototype.hasOwnProperty.call(module, ref.exportName)) {
    throw new LoadError(`cannot load ${where}: ${path} has no export "${ref.exportName}"; ${listExports(module)}`);
  }
  const value = module[ref.exportName];
  if (!isWorkload(value)) {
    throw new LoadError(
      `cannot load ${where}: export "${ref.exportName}" is ${describeValue(value)}; ` +
        `export what endpoint(), taskQueue(), fn() or schedule() from "beta9" returns. ${listExports(module)}`,
    );
  }
  return value;
}

/**
 * Runs the workload's onStart once, returning its (awaited) value; a throw becomes a LoadError.
 *
 * @example
 * const onStartValue = await runOnStart(workload, "app.js:predict");
 */
export async function runOnStart(workload: WorkloadDescriptor, where: string): Promise<unknown> {
  if (typeof workload.onStart !== "function") return undefined;
  try {
    return await workload.onStart();
  } catch (err) {
    throw new LoadError(`onStart of ${workload.kind} "${workload.name}" (${where}) failed:\n${errorText(err)}`);
  }
}
