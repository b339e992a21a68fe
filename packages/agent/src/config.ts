/**
 * ~/.b9agent/config.yaml (or $B9AGENT_HOME/config.yaml): the seed's fields (gateway, machine,
 * pool) plus the agent's own settings. Written with mode 0600 because it holds the machine token.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { parse, stringify } from "yaml";
import { parseSubnet, RUNTIME_NAME_PATTERN } from "@beta9/worker";

export interface AgentConfig {
  /**
   * `tlsCa`: the gateway's own certificate (PEM), pinned by `b9agent init --tls-fingerprint`; the
   * only one trusted for it. Without it an https:// gateway needs a certificate the system trusts.
   * `alternates`: more gateways on the same database ("host:port", same scheme and certificate),
   * tried in turn when the one in use is lost (`b9agent init --gateway A:1994,B:1994`).
   */
  gateway: { host: string; port: number; tls: boolean; tlsCa?: string; alternates?: string[] };
  machine: { id: string; token: string; hostname: string };
  pool: string;
  keepaliveIntervalSeconds: number;
  /** Prometheus /metrics port; 0 turns the endpoint off. */
  metricsPort: number;
  metricsHost: string;
  runtime: "auto" | "runc" | "process";
  /** Let the process runtime (no isolation) run containers here: trusted code only (see the worker's --allow-unisolated). */
  allowUnisolated: boolean;
  /** Worker state (image cache, code, runtime dirs); default <home>/state. */
  stateDir: string;
  logLevel: (typeof LOG_LEVELS)[number];
  /**
   * Prefix of the worker's bridge, netns and cgroups, and its container subnet. Both differ from
   * `beta9 up`'s ("local", 10.219.0.0/24) so an agent and a local platform can share a host.
   */
  worker: { name: string; subnet: string };
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const DEFAULT_METRICS_PORT = 9464;

export function agentHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.B9AGENT_HOME && env.B9AGENT_HOME !== "" ? env.B9AGENT_HOME : join(homedir(), ".b9agent");
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(agentHome(env), "config.yaml");
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9a-fA-F:]+\]?$/;
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
const RUNTIMES = ["auto", "runc", "process"] as const;

function int(value: unknown, key: string, min: number, max: number): number {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${key} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  return n;
}

function str(value: unknown, key: string, pattern?: RegExp, hint = ""): string {
  if (typeof value !== "string" || value === "") throw new ConfigError(`${key} must be a non-empty string`);
  if (pattern && !pattern.test(value)) throw new ConfigError(`${key} ${JSON.stringify(value)} is not valid${hint ? `: ${hint}` : ""}`);
  return value;
}

function bool(value: unknown, key: string): boolean {
  if (typeof value === "boolean") return value;
  if (value === "true") return true;
  if (value === "false") return false;
  throw new ConfigError(`${key} must be true or false`);
}

function oneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) throw new ConfigError(`${key} must be one of ${allowed.join(", ")}`);
  return value as T;
}

/** gateway.alternates: "host:port" entries, as a YAML list or one comma-separated string ("" clears it). */
function alternates(value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === "string" ? value.split(",").map((x) => x.trim()).filter(Boolean) : undefined;
  if (!list || list.length > 16) throw new ConfigError("gateway.alternates must be a list of at most 16 HOST:PORT entries");
  return list.map((entry) => {
    const m = typeof entry === "string" ? /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry) : null;
    if (!m) throw new ConfigError(`gateway.alternates entry ${JSON.stringify(entry)} must be HOST:PORT, e.g. 100.72.101.24:1994`);
    const host = str(m[1]!.replace(/^\[|\]$/g, ""), "gateway.alternates host", HOST, "a host name or IP address");
    return `${host.includes(":") ? `[${host}]` : host}:${int(m[2]!, "gateway.alternates port", 1, 65_535)}`;
  });
}

/** Every settable key, its validator, and where it lives in the file. */
export const CONFIG_KEYS = {
  "gateway.host": (v: unknown) => str(v, "gateway.host", HOST, "a host name or IP address without a port"),
  "gateway.port": (v: unknown) => int(v, "gateway.port", 1, 65_535),
  "gateway.tls": (v: unknown) => bool(v, "gateway.tls"),
  "gateway.alternates": (v: unknown) => alternates(v),
  "machine.id": (v: unknown) => (v === "" ? "" : str(v, "machine.id", /^[A-Za-z0-9_-]{1,128}$/)),
  "machine.token": (v: unknown) => str(v, "machine.token", /^\S{8,512}$/, "the token printed by `beta9 machine create`"),
  "machine.hostname": (v: unknown) => str(v, "machine.hostname", /^\S{1,253}$/),
  pool: (v: unknown) => str(v, "pool", NAME, "lowercase letters, digits and dashes"),
  keepaliveIntervalSeconds: (v: unknown) => int(v, "keepaliveIntervalSeconds", 1, 3600),
  metricsPort: (v: unknown) => int(v, "metricsPort", 0, 65_535),
  metricsHost: (v: unknown) => str(v, "metricsHost", HOST),
  runtime: (v: unknown) => oneOf(v, "runtime", RUNTIMES),
  allowUnisolated: (v: unknown) => bool(v, "allowUnisolated"),
  stateDir: (v: unknown) => {
    const dir = str(v, "stateDir");
    if (!isAbsolute(dir)) throw new ConfigError("stateDir must be an absolute path");
    return dir;
  },
  logLevel: (v: unknown) => oneOf(v, "logLevel", LOG_LEVELS),
  "worker.name": (v: unknown) => str(v, "worker.name", RUNTIME_NAME_PATTERN, "1 to 8 lowercase letters or digits, distinct per worker on this host"),
  "worker.subnet": (v: unknown) => {
    const cidr = str(v, "worker.subnet");
    try {
      return parseSubnet(cidr).cidr;
    } catch (err) {
      throw new ConfigError(`worker.subnet: ${(err as Error).message}`);
    }
  },
} as const;
export type ConfigKey = keyof typeof CONFIG_KEYS;

export function isConfigKey(key: string): key is ConfigKey {
  return Object.hasOwn(CONFIG_KEYS, key);
}

function getPath(obj: unknown, key: string): unknown {
  return key.split(".").reduce<unknown>((o, k) => (o && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), obj);
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
  o[parts.at(-1)!] = value;
}

export function defaults(home: string, hostname: string): Omit<AgentConfig, "gateway" | "machine" | "pool"> & { machine: { hostname: string; id: string } } {
  return {
    machine: { hostname, id: "" }, keepaliveIntervalSeconds: 60, metricsPort: DEFAULT_METRICS_PORT, metricsHost: "127.0.0.1",
    runtime: "auto", allowUnisolated: false, stateDir: join(home, "state"), logLevel: "info", worker: { name: "agent", subnet: "10.219.64.0/24" },
  };
}

/** Validates a parsed file (defaults filled in); unknown keys are errors so typos do not go unnoticed. */
export function validateConfig(raw: unknown, home: string, hostname: string): AgentConfig {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError("the config file must be a YAML mapping");
  const known = new Set(["gateway", "machine", "pool", "k3s", "worker", ...Object.keys(CONFIG_KEYS)]);
  for (const key of Object.keys(raw)) if (!known.has(key)) throw new ConfigError(`unknown key ${key}; known keys: ${Object.keys(CONFIG_KEYS).join(", ")}`);
  const d = defaults(home, hostname);
  const value = (key: ConfigKey, fallback?: unknown) => {
    const v = getPath(raw, key);
    return CONFIG_KEYS[key](v === undefined || v === null ? fallback : v);
  };
  return {
    gateway: {
      host: value("gateway.host") as string, port: value("gateway.port") as number, tls: value("gateway.tls", false) as boolean,
      ...tlsCaField(getPath(raw, "gateway.tlsCa")),
      ...(() => {
        const more = getPath(raw, "gateway.alternates");
        const list = more === undefined || more === null ? [] : alternates(more);
        return list.length > 0 ? { alternates: list } : {};
      })(),
    },
    machine: { id: value("machine.id", d.machine.id) as string, token: value("machine.token") as string, hostname: value("machine.hostname", d.machine.hostname) as string },
    pool: value("pool") as string,
    keepaliveIntervalSeconds: value("keepaliveIntervalSeconds", d.keepaliveIntervalSeconds) as number,
    metricsPort: value("metricsPort", d.metricsPort) as number,
    metricsHost: value("metricsHost", d.metricsHost) as string,
    runtime: value("runtime", d.runtime) as AgentConfig["runtime"],
    allowUnisolated: value("allowUnisolated", d.allowUnisolated) as boolean,
    stateDir: value("stateDir", d.stateDir) as string,
    logLevel: value("logLevel", d.logLevel) as AgentConfig["logLevel"],
    worker: { name: value("worker.name", d.worker.name) as string, subnet: value("worker.subnet", d.worker.subnet) as string },
  };
}

/** gateway.tlsCa: a PEM certificate (only with gateway.tls), or absent. */
function tlsCaField(value: unknown): { tlsCa?: string } {
  if (value === undefined || value === null) return {};
  if (typeof value !== "string" || !value.includes("-----BEGIN CERTIFICATE-----")) throw new ConfigError("gateway.tlsCa must be a PEM certificate (b9agent init --tls-fingerprint writes it)");
  return { tlsCa: value };
}

/** "host:port", "[::1]:1994" or "https://host:port" → gateway fields. */
export function parseGatewayAddress(address: string): AgentConfig["gateway"] {
  const tls = address.startsWith("https://");
  const bare = address.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const m = bare.match(/^(\[[^\]]+\]|[^:]+):(\d+)$/);
  if (!m) throw new ConfigError(`--gateway ${JSON.stringify(address)} must be HOST:PORT, e.g. 100.72.101.23:1994`);
  return { host: CONFIG_KEYS["gateway.host"](m[1]!.replace(/^\[|\]$/g, "")), port: CONFIG_KEYS["gateway.port"](m[2]!), tls };
}

export function gatewayUrl(config: AgentConfig): string {
  const host = config.gateway.host.includes(":") ? `[${config.gateway.host}]` : config.gateway.host;
  return `${config.gateway.tls ? "https" : "http"}://${host}:${config.gateway.port}`;
}

/** The gateway, then its alternates: the order the agent and its worker try them in. */
export function gatewayUrls(config: AgentConfig): string[] {
  const scheme = config.gateway.tls ? "https" : "http";
  return [gatewayUrl(config), ...(config.gateway.alternates ?? []).map((address) => `${scheme}://${address}`)];
}

export function loadConfig(path: string, home: string, hostname: string): AgentConfig {
  if (!existsSync(path)) throw new ConfigError(`no config at ${path}; run \`b9agent init --gateway HOST:PORT --token TOKEN --pool POOL\` first`);
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError(`${path} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  try {
    return validateConfig(raw, home, hostname);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${path}: ${err.message}`);
    throw err;
  }
}

/** Writes atomically (temp file + rename) with mode 0600: a crash never leaves half a token. */
export function saveConfig(path: string, config: AgentConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const doc = {
    gateway: config.gateway, machine: config.machine, pool: config.pool,
    keepaliveIntervalSeconds: config.keepaliveIntervalSeconds, metricsPort: config.metricsPort, metricsHost: config.metricsHost,
    runtime: config.runtime, allowUnisolated: config.allowUnisolated, stateDir: config.stateDir, logLevel: config.logLevel, worker: config.worker,
  };
  writeFileSync(tmp, stringify(doc), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** Sets one key (validated) and returns the new config; the file is untouched on error. */
export function setConfigKey(config: AgentConfig, key: string, value: string): AgentConfig {
  if (!isConfigKey(key)) throw new ConfigError(`unknown key ${key}; known keys: ${Object.keys(CONFIG_KEYS).join(", ")}`);
  const next = structuredClone(config) as unknown as Record<string, unknown>;
  setPath(next, key, CONFIG_KEYS[key](value));
  return next as unknown as AgentConfig;
}

export function maskToken(token: string): string {
  // A short prefix helps tell tokens apart; the rest never reaches a terminal or a log.
  return token.length <= 12 ? "****" : `${token.slice(0, 4)}****`;
}

/** The config as shown by `config show`: token masked. */
export function showConfig(config: AgentConfig): string {
  return stringify({ ...config, machine: { ...config.machine, token: maskToken(config.machine.token) } });
}
