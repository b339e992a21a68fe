/** Picks the container runtime for this machine: runc where it can isolate, else plain processes (said loudly). */
import { join } from "node:path";
import type { Logger } from "pino";
import { findExecutable } from "./exec.js";
import { PROCESS_RUNTIME_WARNING, ProcessRuntime } from "./runtime/process/process-runtime.js";
import { RuncRuntime } from "./runtime/runc/runc-runtime.js";
import type { Runtime } from "./runtime/types.js";

export type RuntimePreference = "auto" | "runc" | "process";

export { findExecutable };

/** Why runc cannot be used here, or undefined when it can. */
export function runcUnavailableReason(): string | undefined {
  if (process.platform !== "linux") return `runc needs Linux; this is ${process.platform}`;
  if (process.getuid?.() !== 0) return "runc needs root; run the worker as root for isolation";
  if (!findExecutable("runc")) return "runc is not installed (apt-get install runc)";
  return undefined;
}

export interface RuntimeSelection {
  stateDir: string;
  /** [a-z0-9]{1,8}: prefixes the runtime's host objects (bridge, netns, cgroups). */
  name: string;
  subnet?: string;
  /** See RuncRuntimeOptions.egressAllow. */
  egressAllow?: string[];
  /** See RuncRuntimeOptions.userns / writableLayerMiB. */
  userns?: boolean;
  writableLayerMiB?: number;
}

export function selectRuntime(preference: RuntimePreference, selection: RuntimeSelection, logger: Logger): Runtime {
  const unavailable = runcUnavailableReason();
  if (preference === "runc" && unavailable) throw new Error(`--runtime runc: ${unavailable}`);
  if (preference === "process" || unavailable) {
    const why = preference === "process" ? "--runtime process was asked for" : unavailable;
    logger.warn({ reason: why }, PROCESS_RUNTIME_WARNING);
    process.stderr.write(`\n${PROCESS_RUNTIME_WARNING}\n(${why})\n\n`);
    return new ProcessRuntime({ tempRoot: join(selection.stateDir, "process") });
  }
  return new RuncRuntime({
    stateDir: join(selection.stateDir, "runc"),
    name: selection.name,
    runcPath: findExecutable("runc")!,
    ...(selection.subnet !== undefined && { subnet: selection.subnet }),
    ...(selection.egressAllow?.length && { egressAllow: selection.egressAllow }),
    ...(selection.userns === false && { userns: false }),
    ...(selection.writableLayerMiB !== undefined && { writableLayerMiB: selection.writableLayerMiB }),
  });
}
