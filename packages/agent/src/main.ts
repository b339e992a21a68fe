#!/usr/bin/env node
/** The `b9agent` command. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. */
import { fetchPinnedCertificate } from "./tls-pin.js";
import { realpathSync } from "node:fs";
import { hostname } from "node:os";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { pino } from "pino";
import { Agent } from "./agent.js";
import {
  ConfigError, agentHome, configPath, defaults, loadConfig, parseGatewayAddress, saveConfig, setConfigKey, showConfig, validateConfig,
  type AgentConfig,
} from "./config.js";
import { agentRegistry, serveMetrics } from "./metrics.js";
import { systemdUnit } from "./service.js";
import { AGENT_VERSION } from "./version.js";

function fail(message: string, code: number): never {
  process.stderr.write(`b9agent: ${message}\n`);
  process.exit(code);
}

function load(): AgentConfig {
  try {
    return loadConfig(configPath(), agentHome(), hostname());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
}

async function run(options: { tui: boolean }): Promise<void> {
  const config = load();
  const interactive = options.tui && Boolean(process.stdout.isTTY) && Boolean(process.stdin.isTTY);
  // With the TUI on the terminal, logs go to a file so they do not tear the dashboard.
  const destination = interactive ? pino.destination({ dest: `${agentHome()}/agent.log`, mkdir: true, sync: false }) : pino.destination({ fd: 2, sync: false });
  const logger = pino({ level: config.logLevel, base: { machine: config.machine.id || undefined } }, destination);
  const agent = new Agent({ config, logger });
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (config.metricsPort !== 0) {
    try {
      metrics = await serveMetrics(agentRegistry(agent), config.metricsHost, config.metricsPort);
      logger.info({ url: metrics.url }, "metrics served");
    } catch (err) {
      fail(`cannot serve metrics on ${config.metricsHost}:${config.metricsPort}: ${(err as Error).message} (b9agent config set metricsPort 0 turns them off)`, 1);
    }
  }
  let dashboard: { unmount(): void } | undefined;
  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    stopping ??= (async () => {
      logger.info({ signal }, "stopping: containers get their grace period");
      dashboard?.unmount();
      await agent.stop();
      await metrics?.close();
      logger.flush();
      process.exit(0);
    })();
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  agent.start();
  // A worker that cannot start (runc state, permissions) ends the agent: exit non-zero so systemd retries.
  void agent.finished().then((err) => {
    if (!err || stopping) return;
    dashboard?.unmount();
    process.stderr.write(`b9agent: ${err.message}\n`);
    logger.flush();
    process.exit(1);
  });
  // ink is loaded only for the TUI: a service never pays for React.
  // Remember the id the gateway gave this machine, so config show and logs name it.
  agent.on("change", () => {
    const id = agent.snapshot().machineId;
    if (id !== "" && id !== config.machine.id) {
      config.machine.id = id;
      try {
        saveConfig(configPath(), config);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, "could not save the machine id to the config");
      }
    }
  });
  if (interactive) dashboard = (await import("./tui/app.js")).renderDashboard(agent, () => shutdown("quit"));
  if (!interactive) {
    // Without the dashboard, each status transition is one log line (READY, RECONNECTING, …).
    let last = "";
    agent.on("change", () => {
      const s = agent.snapshot();
      if (s.status === last) return;
      last = s.status;
      logger.info({ status: s.status, machineId: s.machineId, ...(s.status !== "READY" && s.lastError && { lastError: s.lastError }) }, `agent ${s.status.toLowerCase()}`);
    });
  }
}

export function buildProgram(): Command {
  const program = new Command("b9agent")
    .description("Join this machine to a beta9-ts gateway: register, keep alive, run its worker (live dashboard by default)")
    .version(AGENT_VERSION)
    .exitOverride()
    .option("--no-tui", "log with pino instead of the dashboard (for services)")
    .action((opts: { tui: boolean }) => run({ tui: opts.tui }));

  program.command("run")
    .description("run the agent (same as plain `b9agent`)")
    .option("--no-tui", "log with pino instead of the dashboard (for services)")
    .action((opts: { tui: boolean }) => run({ tui: opts.tui }));

  program.command("init")
    .description(`write ${configPath()} (mode 0600)`)
    .requiredOption("--gateway <host:port[,host:port…]>", "the gateway's address as this machine reaches it, e.g. 100.72.101.23:1994; several gateways on one database are tried in turn when one is lost")
    .requiredOption("--token <token>", "the machine token from `beta9 machine create`")
    .requiredOption("--pool <pool>", "the pool this machine joins")
    .option("--machine-id <id>", "the machine id (learned at registration when omitted)")
    .option("--hostname <name>", "the name reported to the gateway", hostname())
    .option("--metrics-port <port>", "Prometheus port on 127.0.0.1 (0: off)")
    .option("--tls-fingerprint <sha256>", "pin the gateway's certificate (https:// gateways with a self-signed one): the fingerprint `beta9 machine create` printed")
    .option("--force", "overwrite an existing config")
    .action(async (opts: { gateway: string; token: string; pool: string; machineId?: string; hostname: string; metricsPort?: string; force?: boolean; tlsFingerprint?: string }) => {
      const path = configPath();
      try {
        const existing = (() => { try { return loadConfig(path, agentHome(), hostname()); } catch { return undefined; } })();
        if (existing && !opts.force) fail(`${path} already exists; pass --force to overwrite it, or use \`b9agent config set\``, 2);
        const d = defaults(agentHome(), hostname());
        const [first, ...more] = opts.gateway.split(",").map((x) => x.trim()).filter(Boolean);
        const gateway = parseGatewayAddress(first ?? "");
        if (more.length > 0) {
          const scheme = gateway.tls ? "https://" : "http://";
          const mixed = more.find((address) => /^https?:\/\//.test(address) && !address.startsWith(scheme));
          if (mixed) fail(`--gateway ${mixed}: every gateway must use ${scheme} like the first`, 2);
          gateway.alternates = more.map((address) => address.replace(/^https?:\/\//, "").replace(/\/+$/, ""));
        }
        if (opts.tlsFingerprint !== undefined) {
          if (!gateway.tls) fail(`--tls-fingerprint needs an https:// gateway: --gateway https://${opts.gateway.replace(/^https?:\/\//, "")}`, 2);
          gateway.tlsCa = await fetchPinnedCertificate(gateway.host, gateway.port, opts.tlsFingerprint).catch((err: Error) => fail(err.message, 1));
        }
        const config = validateConfig({
          ...d, gateway, machine: { id: opts.machineId ?? "", token: opts.token, hostname: opts.hostname },
          pool: opts.pool, ...(opts.metricsPort !== undefined && { metricsPort: opts.metricsPort }),
        }, agentHome(), hostname());
        saveConfig(path, config);
        process.stdout.write(`wrote ${path}\nstart the agent with: b9agent   (or b9agent install-service for systemd)\n`);
      } catch (err) {
        if (err instanceof ConfigError) fail(err.message, 2);
        throw err;
      }
    });

  const config = program.command("config").description("show or change the agent's config");
  config.command("show").description("print the config (token masked)").option("--json", "as JSON").action((opts: { json?: boolean }) => {
    const c = load();
    process.stdout.write(opts.json ? `${JSON.stringify({ ...c, machine: { ...c.machine, token: "****" } }, null, 2)}\n` : showConfig(c));
  });
  config.command("set").description("set one key (validated), e.g. `b9agent config set keepaliveIntervalSeconds 30`")
    .argument("<key>").argument("<value>")
    .action((key: string, value: string) => {
      try {
        saveConfig(configPath(), setConfigKey(load(), key, value));
        process.stdout.write(`${key} set; restart the agent for it to take effect\n`);
      } catch (err) {
        if (err instanceof ConfigError) fail(err.message, 2);
        throw err;
      }
    });

  program.command("install-service")
    .description("write a systemd unit running `b9agent run --no-tui` and print how to enable it")
    .option("--user <user>", "the user the service runs as (root is needed for runc)", "root")
    .option("--output <path>", "where to write the unit", "/etc/systemd/system/b9agent.service")
    .action((opts: { user: string; output: string }) => {
      load(); // refuse to install a service that would crash-loop on a missing config
      const unit = systemdUnit({ nodePath: process.execPath, scriptPath: realpathSync(fileURLToPath(import.meta.url)), user: opts.user, home: agentHome() });
      writeFileSync(opts.output, unit, { mode: 0o644 });
      const name = opts.output.split("/").pop()!.replace(/\.service$/, "");
      process.stdout.write(`wrote ${opts.output}\nenable and start it with:\n  sudo systemctl daemon-reload && sudo systemctl enable --now ${name}\n`);
    });
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  process.stderr.write(`b9agent: ${(err as Error).message}\n`);
  process.exit(1);
}
