/**
 * The CLI's saved contexts (gateway URL + token) in <config dir>/config.json, the config dir being
 * BETA9_CONFIG_DIR or ~/.beta9. `beta9 up` and `beta9 config create` write it (the CLI's
 * config-file.ts, which reads it through this module); the SDK's default client reads it too, so a
 * script run right after `beta9 up` reaches that gateway. BETA9_GATEWAY and BETA9_TOKEN win over it.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { formatErrorMessage } from "@beta9/protocol";

export interface Context {
  gateway: string;
  token?: string;
  /** PEM of the gateway's certificate, trusted for this gateway alone (a self-signed one from `beta9 up --tls`). */
  tlsCa?: string;
}

export interface ConfigFile {
  current?: string;
  contexts: Record<string, Context>;
}

export type Env = Record<string, string | undefined>;

/** The config file is unreadable (CONFIG_UNREADABLE) or not a config (CONFIG_INVALID); the message names it. */
export class ConfigFileError extends Error {
  constructor(
    readonly code: "CONFIG_INVALID" | "CONFIG_UNREADABLE",
    path: string,
    reason: string,
  ) {
    super(formatErrorMessage(code, { path, reason }));
    this.name = "ConfigFileError";
  }
}

export function configDir(env: Env = process.env): string {
  return env.BETA9_CONFIG_DIR || join(homedir(), ".beta9");
}

export function configPath(dir: string): string {
  return join(dir, "config.json");
}

/** The file's contexts; no file is no context (`{ contexts: {} }`). */
export function readConfig(dir: string): ConfigFile {
  const path = configPath(dir);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { contexts: {} };
    throw new ConfigFileError("CONFIG_UNREADABLE", path, (err as Error).message);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigFileError("CONFIG_INVALID", path, `not valid JSON (${(err as Error).message})`);
  }
  return validate(parsed, path);
}

function validate(value: unknown, path: string): ConfigFile {
  const bad = (why: string) => new ConfigFileError("CONFIG_INVALID", path, why);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad("expected a JSON object");
  const { current, contexts } = value as { current?: unknown; contexts?: unknown };
  if (current !== undefined && typeof current !== "string") throw bad('"current" must be a string');
  if (contexts !== undefined && (typeof contexts !== "object" || contexts === null || Array.isArray(contexts))) {
    throw bad('"contexts" must be an object');
  }
  const out: ConfigFile = { contexts: {} };
  if (current !== undefined) out.current = current;
  for (const [name, ctx] of Object.entries((contexts ?? {}) as Record<string, unknown>)) {
    const { gateway, token, tlsCa } = (ctx ?? {}) as { gateway?: unknown; token?: unknown; tlsCa?: unknown };
    if (typeof gateway !== "string") throw bad(`context ${name} needs a "gateway" string`);
    if (token !== undefined && typeof token !== "string") throw bad(`context ${name}: "token" must be a string`);
    if (tlsCa !== undefined && (typeof tlsCa !== "string" || !tlsCa.includes("BEGIN CERTIFICATE"))) throw bad(`context ${name}: "tlsCa" must be a PEM certificate`);
    out.contexts[name] = { gateway, ...(token !== undefined && { token }), ...(tlsCa !== undefined && { tlsCa: tlsCa as string }) };
  }
  return out;
}

/**
 * Gateway and token for the SDK's default client: BETA9_GATEWAY / BETA9_TOKEN, each falling back
 * to the CLI's current context (what `beta9 up` or `beta9 config select` left selected).
 * Undefined when neither names a gateway.
 */
export function defaultClientOptions(env: Env = process.env): { gateway: string; token?: string; tlsCa?: string } | undefined {
  // The file is read only when the environment leaves something to fill: CI needs no file.
  const file = env.BETA9_GATEWAY && env.BETA9_TOKEN ? undefined : readConfig(configDir(env));
  const context = file?.current === undefined ? undefined : file.contexts[file.current];
  const gateway = env.BETA9_GATEWAY || context?.gateway;
  if (!gateway) return undefined;
  const token = env.BETA9_TOKEN || context?.token;
  // A context's certificate belongs to its gateway: not to another one named in the environment.
  const tlsCa = tlsCaFromEnv(env) ?? (context && context.gateway === gateway ? context.tlsCa : undefined);
  return { gateway, ...(token && { token }), ...(tlsCa && { tlsCa }) };
}

/** BETA9_TLS_CA: the path of a PEM certificate to trust for the gateway (the PEM itself is taken too). */
export function tlsCaFromEnv(env: Env = process.env): string | undefined {
  const value = env.BETA9_TLS_CA;
  if (!value) return undefined;
  if (value.includes("BEGIN CERTIFICATE")) return value;
  try {
    return readFileSync(value, "utf8");
  } catch (err) {
    throw new ConfigFileError("CONFIG_UNREADABLE", value, `BETA9_TLS_CA: ${(err as Error).message}`);
  }
}

export const NO_CLIENT_CONFIGURED =
  "no gateway configured: run `beta9 up` (or `beta9 config create`), set BETA9_GATEWAY and BETA9_TOKEN, or pass { client: new Client({ gateway, token }) }";
