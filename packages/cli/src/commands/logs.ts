/**
 * `beta9 logs`: stored container logs of one deployment, task, container or sandbox (kept by the
 * gateway across restarts), optionally followed. Names and id prefixes are accepted as elsewhere.
 */
import { InvalidArgumentError, type Command } from "commander";
import type { Client, LogEntry, LogsFilter, SandboxInfo } from "beta9";
import { parseSince } from "@beta9/protocol";
import { withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, terminalSafe } from "../output.js";
import { CliError, EXIT } from "../errors.js";

interface LogsOptions {
  deployment?: string;
  task?: string;
  container?: string;
  sandbox?: string;
  follow?: boolean;
  since?: string;
  tail?: number;
  json?: boolean;
}

function lineCount(value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 10_000) throw new InvalidArgumentError("must be a number of lines from 1 to 10000");
  return Number(value);
}

function since(value: string): string {
  if (parseSince(value) === undefined) throw new InvalidArgumentError("must be a duration like 10m, 2h or 7d, or an ISO 8601 time");
  return value;
}

/** The filter for the one thing named; names and unique id starts are looked up. */
async function filterOf(client: Client, opts: LogsOptions): Promise<LogsFilter> {
  const given = (["deployment", "task", "container", "sandbox"] as const).filter((k) => opts[k] !== undefined);
  if (given.length !== 1) {
    throw new CliError("USAGE", `give exactly one of --deployment, --task, --container or --sandbox${given.length > 1 ? ` (got ${given.map((g) => `--${g}`).join(", ")})` : ""}`, EXIT.usage);
  }
  if (opts.deployment !== undefined) {
    return { deploymentId: await resolveRef("deployment", opts.deployment, async () => (await client.listDeployments({ limit: 1000 }))
      .map((d) => ({ ...d, names: [d.name, `${d.name}/v${d.version}`] })), (named) => named.sort((a, b) => b.version - a.version)[0]) };
  }
  if (opts.task !== undefined) return { taskId: await resolveRef("task", opts.task, () => client.listTasks({ limit: 1000 })) };
  if (opts.container !== undefined) return { containerId: await resolveRef("container", opts.container, () => client.listContainers()) };
  const sandboxes = async () => (await client.request<{ items: SandboxInfo[] }>("GET", "/sandbox", { query: { limit: "1000" } })).items;
  return { sandboxId: await resolveRef("sandbox", opts.sandbox!, sandboxes) };
}

export function registerLogs(program: Command): void {
  program
    .command("logs")
    .description("print stored container logs of a deployment, task, container or sandbox (kept across gateway restarts)")
    .option("--deployment <name>", "a deployment: its name (the latest version), NAME/vN, its id or a unique start of it")
    .option("--task <id>", "a task id or a unique start of it (an endpoint call's id from its x-beta9-task-id header too)")
    .option("--container <id>", "a container id or a unique start of it")
    .option("--sandbox <id>", "a sandbox id or a unique start of it")
    .option("-f, --follow", "keep printing new lines: until the container exits or the task ends; a deployment's until interrupted")
    .option("--since <when>", "only lines that arrived since then: 10m, 2h, 7d, or an ISO 8601 time", since)
    .option("-n, --tail <lines>", "how many of the last lines to print first (default 1000)", lineCount)
    .option("--json", "one JSON object per line: seq, containerId, taskId, stream, line, at")
    .addHelpText("after", "\nExamples:\n  beta9 logs --deployment hello -f\n  beta9 logs --task 3f2a --since 1h\n  beta9 logs --sandbox 9c1e --json")
    .action((opts: LogsOptions, cmd: Command) =>
      withClient(cmd, async (client) => {
        const filter: LogsFilter = { ...(await filterOf(client, opts)), ...(opts.since && { since: opts.since }), ...(opts.tail && { limit: opts.tail }) };
        // A deployment's lines come from several containers: each says which.
        const prefix = opts.deployment !== undefined && !opts.json;
        const print = (e: LogEntry) => {
          const text = opts.json ? JSON.stringify(e) : prefix ? `${color.dim(e.containerId.slice(0, 8))} ${terminalSafe(e.line)}` : terminalSafe(e.line);
          (e.stream === "stderr" && !opts.json ? process.stderr : process.stdout).write(`${text}\n`);
        };
        if (!opts.follow) {
          for (const e of await client.logs(filter)) print(e);
          return;
        }
        for await (const event of client.followLogs(filter)) {
          if (event.kind === "log") print(event.entry);
          else if (!opts.json) process.stderr.write(color.dim(`${event.reason}\n`));
        }
      }),
    );
}
