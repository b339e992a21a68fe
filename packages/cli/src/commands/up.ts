/**
 * `beta9 up` (everything a single machine needs, and a saved context for it) and `beta9 gateway`
 * (the control plane alone, for a server that workers on other machines join).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client } from "beta9";
import { deployTarget } from "./deploy.js";
import { egressEntry } from "./worker.js";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { InvalidArgumentError, Option, type Command } from "commander";
import { DEFAULT_GATEWAY_PORT } from "@beta9/protocol";
import type { LogFormat } from "../log-format.js";
import { configDir, DEFAULT_CONTEXT, readConfig, setContext, upContextName, writeConfig } from "../config-file.js";
import { CliError, EXIT, formatError } from "../errors.js";
import { importPlatform } from "../platform.js";
import { color, note, print } from "../output.js";
import { gatewayTls, withTlsOptions, type TlsCliOptions } from "./up-tls.js";
import { prepareDefaultImage } from "./up-image.js";
import { registerGatewayAdmin } from "./gateway-admin.js";

interface ServeOptions extends TlsCliOptions {
  host: string;
  port: number;
  dataDir?: string;
  /** beta9 gateway only: code bundles and packed images in a directory several gateways share. */
  objects?: string;
  /** beta9 gateway only: where the other gateways on the store reach this one. */
  advertiseUrl?: string;
  /** --peer-ca: the PEM text (read and checked by its parser). */
  peerCa?: string;
  logLevel?: string;
  logFormat?: LogFormat;
  runtime?: "auto" | "runc" | "process";
  worker?: boolean;
  allowUnisolated?: boolean;
  egressAllow?: string[];
  install?: boolean;
  /** false: do not build the default image in the background after the first start. */
  prepareImage?: boolean;
  workerTimeout: number;
  machineExpiry: number;
  /** Container log retention in ms, and bytes kept per container (unset: BETA9_LOG_* or the defaults). */
  logRetention?: number;
  logMaxPerContainer?: number;
  /** `beta9 gateway` only: sqlite (the data dir's file) or a postgres:// URL. */
  store?: string;
}

function seconds(value: string): number {
  if (!/^[0-9]{1,6}$/.test(value) || Number(value) < 1) throw new InvalidArgumentError("must be a whole number of seconds, at least 1");
  return Number(value);
}

/** `--store`: sqlite, or a Postgres URL (the gateway connects when it starts, not here). */
function storeSpec(value: string): string {
  if (value === "sqlite" || /^postgres(ql)?:\/\//i.test(value)) return value;
  throw new InvalidArgumentError("must be sqlite or a postgres://user:password@host:5432/database URL");
}

/** --peer-ca FILE: its PEM text, refused before anything starts when it is not a certificate. */
function peerCaFile(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new InvalidArgumentError(`${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}

/** --advertise-url: the same rule the gateway applies, refused before anything starts. */
function advertiseUrl(value: string): string {
  if (/^https?:\/\/[^/]+\/?$/.test(value)) return value;
  throw new InvalidArgumentError("must be http(s)://HOST:PORT, where the other gateways reach this one (e.g. http://10.0.0.5:1994)");
}

const LOG_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };
function logDuration(value: string): number {
  const match = /^([0-9]{1,6})(s|m|h|d)$/.exec(value);
  if (!match || Number(match[1]) < 1) throw new InvalidArgumentError("must be a duration like 7d, 12h or 90m");
  return Number(match[1]) * LOG_UNITS[match[2]!]!;
}
function logSize(value: string): number {
  const match = /^([0-9]{1,6})(Ki|Mi|Gi)$/.exec(value);
  if (!match || Number(match[1]) < 1) throw new InvalidArgumentError("must be a size like 16Mi or 1Gi");
  return Number(match[1]) * LOG_UNITS[match[2]!]!;
}

function port(value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65_535) {
    throw new InvalidArgumentError("must be a port number from 0 to 65535 (0 picks a free one)");
  }
  return Number(value);
}

function withServeOptions(command: Command): Command {
  command
    .option("--host <host>", "address to listen on (0.0.0.0 for every interface)", "127.0.0.1")
    .option("--port <port>", "port to listen on", port, DEFAULT_GATEWAY_PORT)
    .option("--data-dir <dir>", "where the database and objects live (default: $BETA9_DATA_DIR or ~/.beta9/data)")
    .option("--log-level <level>", "gateway log level (trace, debug, info, warn, error)")
    .addOption(new Option("--log-format <format>", "logs as readable lines (pretty: the default on a terminal) or JSON").choices(["auto", "json", "pretty"]).default("auto"))
    .option("--worker-timeout <seconds>", "drop a worker (and lose its containers) after this long without a keepalive", seconds, 60)
    .option("--machine-expiry <seconds>", "expire an external machine (b9agent) after this long without a keepalive", seconds, 300)
    .option("--log-retention <duration>", "keep container logs this long: 7d, 12h, 90m (default $BETA9_LOG_RETENTION or 7d)", logDuration)
    .option("--log-max-per-container <size>", "keep at most this much log per container, its oldest lines cut first: 16Mi, 1Gi (default $BETA9_LOG_MAX_PER_CONTAINER or 16Mi)", logSize);
  return withTlsOptions(command);
}

export function registerServe(program: Command): void {
  withServeOptions(
    program.command("up").description('run beta9 on this machine (gateway and a local worker); on first start, save its admin token as context "default"'),
  )
    .addOption(new Option("--runtime <runtime>", "container runtime of the local worker").choices(["auto", "runc", "process"]).default("auto"))
    .option("--no-worker", "start the gateway only")
    .option("--allow-unisolated", "let a local worker on the process runtime (no runc) run containers: trusted code only")
    .option("--egress-allow <cidr[:port]>", "let every local container reach this private/host destination, which the default egress policy denies (repeatable)", egressEntry)
    .option("--no-install", "do not install missing OS packages (runc, iproute2, …); as root on Debian or Ubuntu, up installs them")
    .option("--no-prepare-image", "do not build the default image (Debian + python3) in the background after the first start")
    .action((opts: ServeOptions) => serve(opts, true));

  // Only the gateway may use a shared store: `up` runs a local worker beside one gateway, on SQLite.
  const gateway = withServeOptions(program.command("gateway").description("run only the gateway (control plane); saves no context"))
    .addOption(new Option("--store <store>", "where durable state lives: sqlite (the data dir) or a postgres:// URL that several gateways can share")
      .env("BETA9_STORE").argParser(storeSpec))
    .addOption(new Option("--objects <dir>", "code bundles and packed images in this directory, shared by every gateway on the store (a shared mount); default: the data dir's own")
      .env("BETA9_OBJECTS"))
    .addOption(new Option("--advertise-url <url>", "where the other gateways on the store reach this one, e.g. http://10.0.0.5:1994 (default: the URL it listens on)")
      .env("BETA9_ADVERTISE_URL").argParser(advertiseUrl))
    .addOption(new Option("--peer-ca <file>", "trust this PEM CA certificate (besides the system's) for the other gateways' https URLs: their self-signed or private-CA certificates")
      .env("BETA9_PEER_CA").argParser(peerCaFile))
    .action((opts: ServeOptions) => serve(opts, false));
  registerGatewayAdmin(gateway);
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}

/** The URL a client on this machine uses: a wildcard listen address is not a destination. */
function localUrl(host: string, boundPort: number, https = false): string {
  const reachable = isWildcard(host) ? "127.0.0.1" : host;
  return `${https ? "https" : "http"}://${reachable.includes(":") ? `[${reachable}]` : reachable}:${boundPort}`;
}

async function serve(opts: ServeOptions, saveContext: boolean): Promise<void> {
  const dataDir = resolve(opts.dataDir ?? (process.env.BETA9_DATA_DIR || join(homedir(), ".beta9", "data")));
  if (saveContext && process.env.BETA9_STORE && process.env.BETA9_STORE !== "sqlite") {
    note(color.dim("BETA9_STORE is for beta9 gateway; beta9 up keeps its store in the data dir (SQLite)"));
  }
  if (saveContext && process.env.BETA9_OBJECTS) note(color.dim("BETA9_OBJECTS is for beta9 gateway; beta9 up keeps its objects in the data dir"));
  if (!saveContext && opts.objects && !opts.store?.startsWith("postgres")) {
    throw new CliError("USAGE", "--objects is for several gateways on one Postgres store: give --store postgres://… (or BETA9_STORE) too", EXIT.usage);
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Loaded here, not at the top, so that client commands never load the server's dependencies;
  // before the OS packages, so that a beta9 without the platform installs nothing.
  const { startGateway, describeStore } = await importPlatform("@beta9/gateway", saveContext ? "up" : "gateway");

  // Only the runc runtime isolates: without its OS packages the local worker would take no containers.
  if (saveContext && opts.worker !== false && opts.runtime !== "process") {
    const { ensureOsPackages, realOsPackageEnv } = await import("../os-packages.js");
    await ensureOsPackages(realOsPackageEnv((line) => note(color.dim(line))), opts.install !== false);
  }
  // Listening before the start: a signal during start-up then means "stop once started", not a kill
  // that could interrupt a database migration.
  const signal = nextSignal();
  const level = opts.logLevel ?? process.env.BETA9_LOG_LEVEL ?? "info";
  const { cliLogger } = await import("../log-format.js"); // pino loads only for commands that run the platform
  const tls = await gatewayTls(opts, dataDir);
  const gateway = await startGateway({
    host: opts.host, port: opts.port, dataDir, logger: cliLogger(level, opts.logFormat), workerTimeoutMs: opts.workerTimeout * 1000,
    machineExpirySeconds: opts.machineExpiry, ...(tls && { tls: tls.tls }), ...(opts.store && { store: opts.store }),
    ...(!saveContext && opts.objects && { objectsDir: resolve(opts.objects) }),
    ...(!saveContext && opts.advertiseUrl && { advertiseUrl: opts.advertiseUrl }),
    ...(!saveContext && opts.peerCa && { peerCa: opts.peerCa }),
    logRetention: { ...(opts.logRetention && { maxAgeMs: opts.logRetention }), ...(opts.logMaxPerContainer && { maxBytesPerContainer: opts.logMaxPerContainer }) },
  }).catch(
    (err: unknown) => {
      const reason = err instanceof Error ? err.message : String(err);
      // An unreachable database is the "cannot reach" exit code that scripts and supervisors retry on.
      if (err instanceof Error && err.name === "StoreUnavailableError") throw new CliError("STORE_UNAVAILABLE", reason, EXIT.unreachable);
      throw new CliError("GATEWAY_START_FAILED", `cannot start the gateway on ${opts.host}:${opts.port} with data in ${dataDir}: ${reason}`);
    },
  );
  // Stopped in reverse order of starting: whatever joins the gateway goes before the gateway.
  const stops: Array<() => Promise<void>> = [() => gateway.close()];
  const url = localUrl(opts.host, gateway.port, tls !== undefined);
  const tlsCa = tls?.tls.cert;

  let workerStarted = false;
  if (saveContext && opts.worker !== false) {
    const worker = await startLocalWorker(url, await gateway.localWorkerToken(), dataDir, opts, tlsCa);
    stops.push(() => worker.close());
    workerStarted = worker.runtime.isolates || opts.allowUnisolated === true;
  }

  if (gateway.bootstrap) {
    const key = gateway.bootstrap.token.key;
    print(`created workspace ${gateway.bootstrap.workspace.name}; its admin token is shown only this once:`);
    print(`admin token: ${color.bold(key)}`);
    const caFlag = tls ? ` --tls-ca ${tls.certPath}` : "";
    let saveHint = `save it: beta9 config create ${DEFAULT_CONTEXT} --gateway ${url} --token ${key}${caFlag} --select`;
    if (saveContext) {
      const dir = configDir();
      try {
        const config = readConfig(dir);
        const name = upContextName(config, url);
        saveHint = `save it: beta9 config create ${name} --gateway ${url} --token ${key}${caFlag} --select`;
        writeConfig(dir, setContext(config, name, { gateway: url, token: key, ...(tlsCa && { tlsCa }) }, true));
        const kept = name === DEFAULT_CONTEXT ? "" : ` (context "${DEFAULT_CONTEXT}" points at ${config.contexts[DEFAULT_CONTEXT]!.gateway} and is kept)`;
        print(color.dim(`saved as context "${name}" in ${dir} and selected it${kept}`));
      } catch (err) {
        // The gateway is fine and the token was printed: keep serving, say how to save it by hand.
        note(`${formatError(err)}\n${saveHint}`);
      }
    } else {
      print(color.dim(saveHint));
    }
  }
  print(`gateway: ${url}${isWildcard(opts.host) ? ` (listening on every interface, port ${gateway.port})` : ""}`);
  if (opts.store && opts.store !== "sqlite") print(`store: ${describeStore(opts.store, dataDir)}`);
  if (!saveContext && opts.objects) print(`objects: ${resolve(opts.objects)}`);
  if (tls) print(`TLS certificate ${tls.certPath}, SHA-256 ${tls.fingerprint}`);
  if (gateway.bootstrap && workerStarted) await deploySample(url, gateway.bootstrap.token.key, tls?.certPath, tlsCa);
  // performance.now() counts from process start, so this includes Node's own start-up.
  print(color.green(`ready in ${Math.round(performance.now())} ms`));
  // Shutdown stops the background build's client first: its open stream must not hold the exit.
  const preparing = new AbortController();
  if (gateway.bootstrap && workerStarted && opts.prepareImage !== false) {
    void prepareDefaultImage({ url, token: gateway.bootstrap.token.key, signal: preparing.signal, ...(tlsCa && { tlsCa }) });
  }
  stops.push(async () => preparing.abort());

  note(`${await signal}: shutting down (send it again to force)`);
  for (const stop of stops.reverse()) await stop();
}

/** examples/hello.ts of a source checkout, if this CLI runs from one. */
function sampleApp(): string | undefined {
  const file = fileURLToPath(new URL("../../../../examples/hello.ts", import.meta.url));
  return existsSync(file) ? file : undefined;
}

/**
 * First start only: deploys the sample endpoint and calls it once (a scale-from-zero cold start),
 * so a new user sees the whole path work. A failure is reported, never fatal.
 */
async function deploySample(url: string, token: string, certPath?: string, tlsCa?: string): Promise<void> {
  const file = sampleApp();
  if (!file) return;
  const client = new Client({ gateway: url, token, ...(tlsCa && { tlsCa }) });
  try {
    const deployed = await deployTarget(client, `${file}:hello`, { quiet: true });
    const started = performance.now();
    const body = JSON.stringify(await client.callEndpoint("hello", { name: "beta9" }));
    print(`sample app: hello v${deployed.deployment.version} answered ${body} (cold start ${Math.round(performance.now() - started)} ms)`);
    const cacert = certPath ? ` --cacert ${certPath}` : "";
    print(color.dim(`try: curl${cacert} -X POST ${url}/endpoint/hello -H "Authorization: Bearer ${token}" -H "Content-Type: application/json" -d '{"name":"you"}'`));
  } catch (err) {
    note(`the sample app did not deploy: ${formatError(err)}`);
  } finally {
    await client.close();
  }
}

/**
 * The host-visible names and subnet of the local worker. The default data dir's worker is "local"
 * on 10.219.0.0/24; another data dir (a second platform on the same host, a test) gets its own,
 * derived from the path, so neither reaps or routes over the other's bridge and containers.
 */
export function localWorkerIdentity(dataDir: string): { name: string; subnet: string } {
  if (dataDir === resolve(join(homedir(), ".beta9", "data"))) return { name: "local", subnet: "10.219.0.0/24" };
  const digest = createHash("sha256").update(dataDir).digest();
  return { name: `u${digest.toString("hex").slice(0, 7)}`, subnet: `10.218.${digest[4]}.0/24` };
}

/** The worker of `beta9 up`: in this process, state under the data dir, the runtime picked or asked for. */
async function startLocalWorker(url: string, token: string, dataDir: string, opts: ServeOptions, tlsCa?: string) {
  const { startWorker } = await importPlatform("@beta9/worker", "up");
  const { cliLogger } = await import("../log-format.js");
  const logger = cliLogger(opts.logLevel ?? process.env.BETA9_LOG_LEVEL ?? "info", opts.logFormat);
  const { name, subnet } = localWorkerIdentity(dataDir);
  const started = await startWorker({ gatewayUrl: url, token, stateDir: join(dataDir, "worker"), logger, runtime: opts.runtime ?? "auto", name, subnet, workerId: "local",
    ...(opts.allowUnisolated === true && { allowUnisolated: true }), ...(opts.egressAllow?.length && { egressAllow: opts.egressAllow }),
    ...(tlsCa && { tlsCa }) }).catch(
    (err: unknown) => {
      throw new CliError("WORKER_START_FAILED", `cannot start the local worker: ${err instanceof Error ? err.message : String(err)}`);
    },
  );
  await started.connected;
  const isolation = started.runtime.isolates ? "" : opts.allowUnisolated ? ", NO isolation: --allow-unisolated" : ", NO isolation: it takes no containers without --allow-unisolated";
  print(`worker: local (${started.runtime.name}${isolation})`);
  return started;
}

/** Resolves on the first SIGINT/SIGTERM and then stops listening, so a second one kills at once. */
function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolvePromise) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      resolvePromise(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
