/**
 * Named contexts (gateway URL + token) in <config dir>/config.json. The file holds secrets, so it
 * is written 0600 in a 0700 directory, and atomically (temp file + rename) so that a crash or two
 * concurrent `beta9` commands never leave a half-written file behind.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { DEFAULT_GATEWAY_PORT } from "@beta9/protocol";
import { CliError, EXIT } from "./errors.js";

export interface Context {
  gateway: string;
  token?: string;
}

export interface ConfigFile {
  current?: string;
  contexts: Record<string, Context>;
}

export type Env = Record<string, string | undefined>;

export const DEFAULT_GATEWAY = `http://127.0.0.1:${DEFAULT_GATEWAY_PORT}`;
export const DEFAULT_CONTEXT = "default";
const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function configDir(env: Env = process.env): string {
  return env.BETA9_CONFIG_DIR || join(homedir(), ".beta9");
}

export function configPath(dir: string): string {
  return join(dir, "config.json");
}

export function readConfig(dir: string): ConfigFile {
  const path = configPath(dir);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { contexts: {} };
    throw new CliError("CONFIG_UNREADABLE", `cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CliError("CONFIG_INVALID", `${path} is not valid JSON (${(err as Error).message}); fix or delete it`);
  }
  return validate(parsed, path);
}

function validate(value: unknown, path: string): ConfigFile {
  const bad = (why: string) => new CliError("CONFIG_INVALID", `${path}: ${why}; fix or delete it`);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad("expected a JSON object");
  const { current, contexts } = value as { current?: unknown; contexts?: unknown };
  if (current !== undefined && typeof current !== "string") throw bad('"current" must be a string');
  if (contexts !== undefined && (typeof contexts !== "object" || contexts === null || Array.isArray(contexts))) {
    throw bad('"contexts" must be an object');
  }
  const out: ConfigFile = { contexts: {} };
  if (current !== undefined) out.current = current;
  for (const [name, ctx] of Object.entries((contexts ?? {}) as Record<string, unknown>)) {
    const { gateway, token } = (ctx ?? {}) as { gateway?: unknown; token?: unknown };
    if (typeof gateway !== "string") throw bad(`context ${name} needs a "gateway" string`);
    if (token !== undefined && typeof token !== "string") throw bad(`context ${name}: "token" must be a string`);
    out.contexts[name] = token === undefined ? { gateway } : { gateway, token };
  }
  return out;
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
}

/**
 * Which gateway and token a command uses: the --context one, else the current one, else the
 * local default; then BETA9_GATEWAY / BETA9_TOKEN override either field, so CI can run without
 * a config file.
 */
export function resolveContext(config: ConfigFile, env: Env, contextName?: string): ResolvedContext {
  const name = contextName ?? config.current;
  const context = name === undefined ? undefined : contextName !== undefined ? requireContext(config, name) : config.contexts[name];
  return {
    name: context ? name : undefined,
    gateway: env.BETA9_GATEWAY ? checkGatewayUrl(env.BETA9_GATEWAY) : (context?.gateway ?? DEFAULT_GATEWAY),
    token: env.BETA9_TOKEN || context?.token,
  };
}

/** Enough of a token to tell two apart, too little to use. */
export function maskToken(token: string | undefined): string {
  if (!token) return "-";
  if (token.length < 16) return "****";
  return `${token.slice(0, 6)}****${token.slice(-4)}`;
}
