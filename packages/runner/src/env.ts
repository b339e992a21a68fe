/**
 * The runner's settings, read from the environment the worker gives it.
 */
import { DEFAULT_GRACE_MS, DEFAULT_PORT } from "./constants.js";

export interface HandlerRef {
  /** Path of the module relative to the code directory, e.g. "dist/app.js". */
  file: string;
  /** Name of the export holding the workload, e.g. "predict". */
  exportName: string;
}

export interface RunnerEnv {
  port: number;
  codeDir: string;
  /** Absent when BETA9_HANDLER is unset: the runner then only serves GET /health. */
  handler: HandlerRef | undefined;
  concurrency: number;
  containerId: string;
  graceMs: number;
}

/** A setting the runner cannot work with; main prints the message and exits 1. */
export class RunnerEnvError extends Error {
  override name = "RunnerEnvError";
}

function intSetting(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RunnerEnvError(`${name}=${JSON.stringify(raw)} is not valid: expected an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * Splits "relative/file.js:exportName" at its last colon.
 *
 * @example
 * parseHandlerRef("dist/app.js:predict"); // { file: "dist/app.js", exportName: "predict" }
 */
export function parseHandlerRef(raw: string): HandlerRef {
  const colon = raw.lastIndexOf(":");
  const file = raw.slice(0, colon);
  const exportName = raw.slice(colon + 1);
  if (colon <= 0 || !/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(exportName)) {
    throw new RunnerEnvError(`BETA9_HANDLER=${JSON.stringify(raw)} is not valid: expected "relative/file.js:exportName"`);
  }
  return { file, exportName };
}

/**
 * Reads PORT, BETA9_CODE_DIR, BETA9_HANDLER, BETA9_CONCURRENCY, BETA9_CONTAINER_ID and
 * BETA9_GRACE_MS; throws RunnerEnvError naming the variable when one is unusable.
 *
 * @example
 * const env = readRunnerEnv({ BETA9_HANDLER: "app.js:hello", BETA9_CODE_DIR: "/app" });
 * env.port; // 8000
 */
export function readRunnerEnv(env: NodeJS.ProcessEnv = process.env): RunnerEnv {
  const handlerRaw = env.BETA9_HANDLER?.trim();
  return {
    port: intSetting(env, "PORT", DEFAULT_PORT, 0, 65_535),
    codeDir: env.BETA9_CODE_DIR?.trim() || process.cwd(),
    handler: handlerRaw ? parseHandlerRef(handlerRaw) : undefined,
    concurrency: intSetting(env, "BETA9_CONCURRENCY", 1, 1, 100_000),
    containerId: env.BETA9_CONTAINER_ID ?? "",
    graceMs: intSetting(env, "BETA9_GRACE_MS", DEFAULT_GRACE_MS, 0, 86_400_000),
  };
}
