/** `beta9 config`: the named contexts (gateway URL + token) in the config file. */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  checkContextName,
  checkGatewayUrl,
  configDir,
  deleteContext,
  maskToken,
  readConfig,
  selectContext,
  setContext,
  writeConfig,
} from "../config-file.js";
import { CliError, EXIT } from "../errors.js";
import { color, note, print, printJson, printTable } from "../output.js";
import { currentContext } from "../session.js";

export function registerConfig(program: Command): void {
  const config = program.command("config").description("manage contexts: which gateway and token commands use");

  config
    .command("list")
    .description("list contexts; * marks the current one")
    .option("--json", "print a JSON array")
    .option("--show-token", "print tokens in full instead of masked")
    .action((opts: { json?: boolean; showToken?: boolean }) => {
      const file = readConfig(configDir());
      const rows = Object.entries(file.contexts).map(([name, ctx]) => ({
        name,
        current: name === file.current,
        gateway: ctx.gateway,
        token: opts.showToken ? (ctx.token ?? null) : ctx.token ? maskToken(ctx.token) : null,
      }));
      if (opts.json) return printJson(rows);
      printTable(
        ["", "NAME", "GATEWAY", "TOKEN"],
        rows.map((r) => [r.current ? color.green("*") : "", r.name, r.gateway, r.token ?? "-"]),
        "no contexts; run `beta9 up` or `beta9 config create`",
      );
      for (const variable of ["BETA9_GATEWAY", "BETA9_TOKEN"]) {
        if (process.env[variable]) note(color.yellow(`${variable} is set and overrides the selected context`));
      }
    });

  config
    .command("token")
    .description("print the token commands use (the current context's, or BETA9_TOKEN), for scripts: curl -H \"Authorization: Bearer $(beta9 config token)\"")
    .action((_opts: unknown, cmd: Command) => {
      const context = currentContext(cmd);
      if (!context.token) throw new CliError("NO_TOKEN", "no token: the selected context has none and BETA9_TOKEN is unset (beta9 up saves one; beta9 config create NAME --gateway URL --token T)", EXIT.notFound);
      process.stdout.write(`${context.token}\n`);
    });

  config
    .command("create")
    .description("add a context (or replace one of the same name)")
    .argument("<name>", "context name")
    .requiredOption("--gateway <url>", "gateway base URL, e.g. http://127.0.0.1:1994")
    .requiredOption("--token <token>", "API token for that gateway")
    .option("--tls-ca <file>", "trust this PEM certificate for the gateway (its self-signed one: the gateway's data dir, tls/gateway.crt)")
    .option("--select", "make it the current context")
    .action((name: string, opts: { gateway: string; token: string; select?: boolean; tlsCa?: string }) => {
      checkContextName(name);
      const gateway = checkGatewayUrl(opts.gateway);
      const tlsCa = opts.tlsCa === undefined ? undefined : readCertificate(opts.tlsCa);
      const dir = configDir();
      const file = readConfig(dir);
      const existed = name in file.contexts;
      const next = setContext(file, name, { gateway, token: opts.token, ...(tlsCa && { tlsCa }) }, opts.select === true);
      writeConfig(dir, next);
      print(`${existed ? "replaced" : "created"} context ${name}${next.current === name ? " (current)" : ""}`);
    });

  config
    .command("select")
    .description("make a context the current one")
    .argument("<name>", "context name")
    .action((name: string) => {
      const dir = configDir();
      writeConfig(dir, selectContext(readConfig(dir), name));
      print(`current context: ${name}`);
    });

  config
    .command("delete")
    .description("remove a context")
    .argument("<name>", "context name")
    .action((name: string) => {
      const dir = configDir();
      const file = readConfig(dir);
      writeConfig(dir, deleteContext(file, name));
      print(`deleted context ${name}${file.current === name ? "; no context is selected now (beta9 config select NAME)" : ""}`);
    });
}

/** A PEM certificate file, checked to parse. */
export function readCertificate(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
    new X509Certificate(pem);
  } catch (err) {
    throw new CliError("INVALID_ARGUMENT", `--tls-ca ${path}: not a readable PEM certificate (${(err as Error).message})`, EXIT.usage);
  }
  return pem;
}
