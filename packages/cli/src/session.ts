/**
 * Turns the global options, the config file and the environment into a connected Client.
 */
import type { Command } from "commander";
import { Client } from "beta9";
import { configDir, readConfig, resolveContext, type ResolvedContext } from "./config-file.js";
import { formatError, exitCodeFor, ReportedError } from "./errors.js";

export function currentContext(command: Command): ResolvedContext {
  const { context } = command.optsWithGlobals<{ context?: string }>();
  return resolveContext(readConfig(configDir()), process.env, context);
}

/** Runs `fn` with a client for the selected context and always closes its connections. */
export async function withClient<T>(command: Command, fn: (client: Client, context: ResolvedContext) => Promise<T>): Promise<T> {
  const context = currentContext(command);
  const client = new Client({ gateway: context.gateway, token: context.token, ...(context.tlsCa && { tlsCa: context.tlsCa }) });
  try {
    return await fn(client, context);
  } finally {
    await client.close();
  }
}

/**
 * Applies `fn` to every id in turn; one failure does not stop the rest. Each failure is printed
 * as it happens and the command ends with the exit code of the first one.
 */
export async function forEachId(ids: string[], fn: (id: string) => Promise<void>): Promise<void> {
  let firstFailure: number | undefined;
  for (const id of ids) {
    try {
      await fn(id);
    } catch (err) {
      process.stderr.write(`${formatError(err)}\n`);
      firstFailure ??= exitCodeFor(err);
    }
  }
  if (firstFailure !== undefined) throw new ReportedError(firstFailure);
}
