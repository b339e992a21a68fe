/** `beta9 worker`: run containers for a gateway on this machine (dials out; needs no inbound port). */
import { resolve, join } from "node:path";
import { homedir } from "node:os";
import { InvalidArgumentError, Option, type Command } from "commander";
import { parseEgressRule } from "@beta9/protocol";
import { tlsCaFromEnv } from "beta9";
import { CliError, EXIT } from "../errors.js";
import { importPlatform } from "../platform.js";
import { readCertificate } from "./config.js";
import { color, note, print } from "../output.js";

interface WorkerCliOptions {
  gateway?: string;
  token?: string;
  pool: string;
  stateDir?: string;
  runtime: "auto" | "runc" | "process";
  name: string;
  subnet?: string;
  id?: string;
  logLevel?: string;
  gpus?: { type: string; count: number }[];
  allowUnisolated?: boolean;
  egressAllow?: string[];
  userns: boolean;
  writableLayerMib?: number;
  tlsCa?: string;
  logFormat?: "auto" | "json" | "pretty";
}

/** --userns=false / --userns true. */
function booleanFlag(value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new InvalidArgumentError(`"${value}" is not true or false`);
}

function wholeNumber(value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return Number(value);
}

/** "A10G:1,T4:2" → [{ type: "A10G", count: 1 }, …] */
function gpuList(value: string): { type: string; count: number }[] {
  return value.split(",").map((part) => {
    const m = /^([A-Za-z0-9._-]{1,32}):([1-9][0-9]?)$/.exec(part.trim());
    if (!m) throw new InvalidArgumentError(`"${part}" is not TYPE:COUNT (e.g. A10G:1)`);
    return { type: m[1]!, count: Number(m[2]) };
  });
}

/** One --egress-allow entry, checked with the parser the worker applies (repeatable: collects). */
export function egressEntry(value: string, previous: string[] | undefined): string[] {
  try {
    parseEgressRule(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return [...(previous ?? []), value];
}

export function registerWorker(program: Command): void {
  program
    .command("worker")
    .description("run a worker that joins a gateway and runs the containers its scheduler places here")
    .option("--gateway <url[,url…]>", "the gateway's URL, or several gateways' (one database behind them) tried in turn when one is lost (default: $BETA9_GATEWAY)")
    .option("--token <token>", "a worker token (beta9 token create --type worker; default: $BETA9_TOKEN)")
    .option("--pool <name>", "the pool this worker serves", "default")
    .option("--state-dir <dir>", "where container state lives (default: ~/.beta9/worker)")
    .addOption(new Option("--runtime <runtime>", "container runtime").choices(["auto", "runc", "process"]).default("auto"))
    .option("--name <name>", "prefix of this worker's bridge, netns and cgroups; distinct per worker on one machine", "w")
    .option("--subnet <cidr>", "container subnet (default 10.219.0.0/24)")
    .option("--id <id>", "worker id (default: hostname plus a random suffix, kept in the state dir so that a restarted worker is the same one)")
    .option("--log-level <level>", "log level (trace, debug, info, warn, error)")
    .addOption(new Option("--log-format <format>", "logs as readable lines (pretty: the default on a terminal) or JSON").choices(["auto", "json", "pretty"]).default("auto"))
    .option("--allow-unisolated", "let the process runtime (no isolation) run containers here: only when every workload, sandbox and image author is trusted")
    .option("--egress-allow <cidr[:port]>", "let every container reach this private/host destination, which the default egress policy denies (repeatable), e.g. 192.168.1.20/32:3128", egressEntry)
    .option("--userns <bool>", "run containers in a user namespace, container root an unprivileged host uid (false: container root is host root)", booleanFlag, true)
    .option("--writable-layer-mib <mib>", "bound on each container's writable layer; 0 = unbounded (default 10240)", wholeNumber)
    .option("--tls-ca <file>", "trust this PEM certificate for an https:// gateway (its self-signed one; default: $BETA9_TLS_CA)")
    .option("--gpus <list>", "GPUs to offer instead of those detected, TYPE:COUNT,… (a pool whose devices this worker cannot see; containers get no device nodes)", gpuList)
    .action(async (opts: WorkerCliOptions) => {
      const gatewayList = opts.gateway ?? process.env.BETA9_GATEWAY;
      const token = opts.token ?? process.env.BETA9_TOKEN;
      if (!gatewayList || !token) throw new CliError("USAGE", "--gateway and --token (or BETA9_GATEWAY and BETA9_TOKEN) are required", EXIT.usage);
      const tlsCa = opts.tlsCa !== undefined ? readCertificate(opts.tlsCa) : tlsCaFromEnv();
      const { startWorker, parseGatewayUrls } = await importPlatform("@beta9/worker", "worker");
      let gatewayUrl: string[];
      try {
        gatewayUrl = parseGatewayUrls(gatewayList);
      } catch (err) {
        throw new CliError("USAGE", `--gateway: ${(err as Error).message}`, EXIT.usage);
      }
      const { cliLogger } = await import("../log-format.js");
      const logger = cliLogger(opts.logLevel ?? process.env.BETA9_LOG_LEVEL ?? "info", opts.logFormat);
      const started = await startWorker({
        gatewayUrl, token, logger, runtime: opts.runtime, name: opts.name, pool: opts.pool,
        stateDir: resolve(opts.stateDir ?? join(homedir(), ".beta9", "worker")),
        ...(opts.subnet !== undefined && { subnet: opts.subnet }), ...(opts.id !== undefined && { workerId: opts.id }),
        ...(opts.gpus !== undefined && { capacity: { gpus: opts.gpus } }),
        ...(opts.allowUnisolated === true && { allowUnisolated: true }),
        ...(opts.egressAllow?.length && { egressAllow: opts.egressAllow }),
        ...(opts.userns === false && { userns: false }),
        ...(opts.writableLayerMib !== undefined && { writableLayerMiB: opts.writableLayerMib }),
        ...(tlsCa && { tlsCa }),
      });
      print(`worker ${started.worker.id} (${started.runtime.name}) dialling ${gatewayUrl.join(", ")}`);
      void started.connected.then(() => print(color.green("connected")));
      const signal = await new Promise<NodeJS.Signals>((r) => {
        process.once("SIGINT", r);
        process.once("SIGTERM", r);
      });
      note(`${signal}: stopping containers and leaving`);
      await started.close();
    });
}
