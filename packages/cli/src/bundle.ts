/**
 * Code sync for the CLI: the bundler lives in the SDK (so `workload.deploy()` from code bundles
 * exactly as `beta9 deploy` does); this maps its failures to the CLI's errors and exit codes.
 */
import { bundleCode as sdkBundleCode, BundleError, type CodeBundle, type ExportRef } from "beta9";
import { CliError } from "./errors.js";

export type { CodeBundle };

export async function bundleCode(entryFile: string, ref: ExportRef): Promise<CodeBundle> {
  try {
    return await sdkBundleCode(entryFile, ref);
  } catch (err) {
    throw asCliError(err);
  }
}

/** SDK deploy failures (bundle, image build) as CliErrors; anything else unchanged. */
export function asCliError(err: unknown): unknown {
  if (err instanceof BundleError) return new CliError(err.code, err.message);
  if (err instanceof Error && (err as { code?: unknown }).code === "IMAGE_BUILD_FAILED") return new CliError("IMAGE_BUILD_FAILED", err.message);
  return err;
}
