/**
 * Named contexts (gateway URL + token) in <config dir>/config.json. The file holds secrets, so it
 * is written 0600 in a 0700 directory, and atomically (temp file + rename) so that a crash or two
 * concurrent `beta9` commands never leave a half-written file behind.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { DEFAULT_GATEWAY_PORT } from "@beta9/protocol";
import { ConfigFileError, configDir, configPath, readConfig as readConfigFile, tlsCaFromEnv, type ConfigContext as Context, type ConfigFile } from "beta9";
import { CliError, EXIT } from "./errors.js";

// Where the file is and how it reads are the SDK's (its default client reads the same file).
export { configDir, configPath, type ConfigFile, type Context };

export type Env = Record<string, string | undefined>;

export const DEFAULT_GATEWAY = `http://127.0.0.1:${DEFAULT_GATEWAY_PORT}`;
export const DEFAULT_CONTEXT = "default";
const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function readConfig(dir: string): ConfigFile {
  try {
    return readConfigFile(dir);
  } catch (err) {
    if (err instanceof ConfigFileError) throw new CliError(err.code, err.message);
    throw err;
  }
}

export function writeConfig(dir: string, config: ConfigFile): void {
  // mode applies only to directories mkdir creates; an existing directory is left as its owner set it.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = configPath(dir);
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(temp, `${JSON.stringify({ current: config.current, contexts: config.contexts }, null, 2)}\n`, { mode: 0o600, flag: "wx", flush: true });
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new CliError("CONFIG_UNWRITABLE", `cannot write ${path}: ${(err as Error).message}`);
  }
}

export function checkContextName(name: string): string {
  if (!CONTEXT_NAME.test(name)) {
    throw new CliError(
      "INVALID_ARGUMENT",
      `context name ${JSON.stringify(name)} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      EXIT.usage,
    );
  }
  return name;
}

export function checkGatewayUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new CliError("INVALID_ARGUMENT", `gateway must be an http:// or https:// URL, got ${JSON.stringify(value)}`, EXIT.usage);
  }
  return value.replace(/\/+$/, "");
}

/**
 * The context `beta9 up` saves a new gateway's admin token as: "default", unless "default" points
 * at another gateway (its token would be lost for good: tokens are shown once), then
 * "default-<port>" (or "-2", "-3"… after that).
 */
export function upContextName(config: ConfigFile, url: string): string {
  const free = (name: string) => !(name in config.contexts) || config.contexts[name]!.gateway === url;
  if (free(DEFAULT_CONTEXT)) return DEFAULT_CONTEXT;
  const base = `${DEFAULT_CONTEXT}-${new URL(url).port || "80"}`;
  let name = base;
  for (let i = 2; !free(name); i++) name = `${base}-${i}`;
  return name;
}

export function setContext(config: ConfigFile, name: string, context: Context, select: boolean): ConfigFile {
  const next: ConfigFile = { ...config, contexts: { ...config.contexts, [name]: context } };
  if (select || next.current === undefined) next.current = name;
  return next;
}

export function selectContext(config: ConfigFile, name: string): ConfigFile {
  requireContext(config, name);
  return { ...config, current: name };
}

/** Deleting the current context leaves none selected rather than silently picking another gateway. */
export function deleteContext(config: ConfigFile, name: string): ConfigFile {
  requireContext(config, name);
  const { [name]: _removed, ...contexts } = config.contexts;
  const next: ConfigFile = { contexts };
  if (config.current !== undefined && config.current !== name) next.current = config.current;
  return next;
}

function requireContext(config: ConfigFile, name: string): Context {
  const context = config.contexts[name];
  if (!context) {
    const known = Object.keys(config.contexts);
    throw new CliError(
      "CONTEXT_NOT_FOUND",
      `no context named ${name}; ${known.length ? `known: ${known.join(", ")}` : "create one with `beta9 config create`"}`,
      EXIT.notFound,
    );
  }
  return context;
}

export interface ResolvedContext {
  /** The context the values came from, or undefined when none is configured. */
  name: string | undefined;
  gateway: string;
  token: string | undefined;
  /** The gateway's certificate (PEM) to trust: BETA9_TLS_CA, else the context's. */
  tlsCa?: string;
}

/**
 * Which gateway and token a command uses: the --context one, else the current one, else the
 * local default; then BETA9_GATEWAY / BETA9_TOKEN override either field, so CI can run without
 * a config file.
 */
export function resolveContext(config: ConfigFile, env: Env, contextName?: string): ResolvedContext {
  const name = contextName ?? config.current;
  const context = name === undefined ? undefined : contextName !== undefined ? requireContext(config, name) : config.contexts[name];
  const gateway = env.BETA9_GATEWAY ? checkGatewayUrl(env.BETA9_GATEWAY) : (context?.gateway ?? DEFAULT_GATEWAY);
  // A context's certificate is for its own gateway, not for another one named in the environment.
  const tlsCa = tlsCaFromEnv(env) ?? (context?.gateway === gateway ? context.tlsCa : undefined);
  return {
    name: context ? name : undefined,
    gateway,
    token: env.BETA9_TOKEN || context?.token,
    ...(tlsCa !== undefined && { tlsCa }),
  };
}

/** Enough of a token to tell two apart, too little to use. */
export function maskToken(token: string | undefined): string {
  if (!token) return "-";
  if (token.length < 16) return "****";
  return `${token.slice(0, 6)}****${token.slice(-4)}`;
}
