/**
 * The platform's packages (gateway, worker), loaded only by the commands that run it. The `beta9`
 * package a project installs (`npm run pack`, scripts/pack.mjs) holds the SDK and the client
 * commands, not the platform: there, `beta9 up` says where the platform runs from instead of
 * failing on a missing module.
 */
import { CliError } from "./errors.js";

type Gateway = typeof import("@beta9/gateway");
type Worker = typeof import("@beta9/worker");

export function importPlatform(name: "@beta9/gateway", command: string): Promise<Gateway>;
export function importPlatform(name: "@beta9/worker", command: string): Promise<Worker>;
export async function importPlatform(name: "@beta9/gateway" | "@beta9/worker", command: string): Promise<Gateway | Worker> {
  try {
    // Literal specifiers, so that each keeps its own type.
    return name === "@beta9/gateway" ? await import("@beta9/gateway") : await import("@beta9/worker");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== "ERR_MODULE_NOT_FOUND" || !e.message.includes(`'${name}'`)) throw err;
    throw new CliError(
      "PLATFORM_NOT_INSTALLED",
      `\`beta9 ${command}\` runs the platform, which this beta9 package does not include (it holds the SDK and the client commands). ` +
        "Run it from a source checkout of beta9-ts (./beta9 up there), then point this CLI at it: BETA9_GATEWAY and BETA9_TOKEN, or beta9 config create.",
    );
  }
}
