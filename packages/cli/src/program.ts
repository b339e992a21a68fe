/**
 * The command tree and the one place where every outcome becomes an exit code (see EXIT).
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { registerConfig } from "./commands/config.js";
import { registerContainer } from "./commands/container.js";
import { registerLogs } from "./commands/logs.js";
import { registerSandbox } from "./commands/sandbox.js";
import { registerShell } from "./commands/shell.js";
import { registerWorker } from "./commands/worker.js";
import { registerMachine } from "./commands/machine.js";
import { registerPool } from "./commands/pool.js";
import { registerStore } from "./commands/store.js";
import { registerSecret } from "./commands/secret.js";
import { registerVolume } from "./commands/volume.js";
import { registerImage } from "./commands/image.js";
import { registerDeploy } from "./commands/deploy.js";
import { registerInit } from "./commands/init.js";
import { registerTask } from "./commands/task.js";
import { registerRun } from "./commands/run.js";
import { registerServe as registerServeCommand } from "./commands/serve.js";
import { registerDeployment } from "./commands/deployment.js";
import { registerPod } from "./commands/pod.js";
import { registerToken } from "./commands/token.js";
import { registerServe } from "./commands/up.js";
import { registerWorkspace } from "./commands/workspace.js";
import { EXIT, exitCodeFor, formatError, ReportedError } from "./errors.js";

const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command("beta9")
    .description("beta9: run serverless AI workloads on your own machines")
    .version(version, "-v, --version", "print the version")
    .option("--context <name>", "use this context instead of the current one (see beta9 config list)")
    .addHelpText(
      "after",
      `
Environment:
  BETA9_GATEWAY, BETA9_TOKEN  override the gateway URL and token of the selected context
  BETA9_CONFIG_DIR            where config.json lives (default ~/.beta9)
  BETA9_DATA_DIR              data directory of \`beta9 up\` (default ~/.beta9/data)
  NO_COLOR                    never print colours

Exit codes: 0 ok, 1 error, 2 usage, 3 auth/permission, 4 not found, 5 gateway unreachable`,
    );

  registerServe(program);
  registerConfig(program);
  registerWorkspace(program);
  registerToken(program);
  registerDeployment(program);
  registerContainer(program);
  registerLogs(program);
  registerSandbox(program);
  registerShell(program);
  registerInit(program);
  registerDeploy(program);
  registerPod(program);
  registerTask(program);
  registerRun(program);
  registerServeCommand(program);
  registerImage(program);
  registerWorker(program);
  registerMachine(program);
  registerPool(program);
  registerStore(program);
  registerSecret(program);
  registerVolume(program);

  forEachCommand(program, (command) => {
    command.exitOverride().configureOutput({
      // Same shape as every other error, plus where to look for the right usage.
      outputError: (message, write) => {
        const text = message.trim().replace(/^error: /, "");
        const path = commandPath(command);
        write(`error: USAGE: ${text}\n${path ? `(see ${path} --help)\n` : ""}`);
      },
    });
  });
  return program;
}

export function forEachCommand(command: Command, fn: (command: Command) => void): void {
  fn(command);
  for (const sub of command.commands) forEachCommand(sub, fn);
}

export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Parses argv (as process.argv), runs the command and resolves to the exit code. */
export async function run(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too; a group run without a subcommand prints help as a usage error.
      return err.code === "commander.helpDisplayed" || err.code === "commander.version" ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ReportedError) return err.exitCode;
    process.stderr.write(`${formatError(err)}\n`);
    return exitCodeFor(err);
  }
}
