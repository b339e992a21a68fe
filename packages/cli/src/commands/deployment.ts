/** `beta9 deployment`: list deployments and stop, start or delete them. */
import { InvalidArgumentError, Option, type Command } from "commander";
import type { Deployment } from "beta9";
import { forEachId, withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";

function positiveInt(value: string): number {
  if (!/^[0-9]{1,9}$/.test(value) || Number(value) < 1) throw new InvalidArgumentError("must be a positive integer");
  return Number(value);
}

function describe(d: Deployment): string {
  return `${d.name} v${d.version} (${d.id})`;
}

export function registerDeployment(program: Command): void {
  const deployment = program.command("deployment").description("manage deployments of the current workspace");

  deployment
    .command("list")
    .description("list deployments, newest first")
    .option("--json", "print a JSON array")
    .option("--name <name>", "only deployments with this name")
    // commander rejects the pair as a usage error, before any request is made.
    .addOption(new Option("--active", "only active deployments").conflicts("inactive"))
    .option("--inactive", "only stopped deployments")
    .option("--limit <n>", "at most this many", positiveInt)
    .action((opts: { json?: boolean; name?: string; active?: boolean; inactive?: boolean; limit?: number }, command: Command) =>
      withClient(command, async (client) => {
        const list = await client.listDeployments({
          name: opts.name,
          active: opts.active ? true : opts.inactive ? false : undefined,
          limit: opts.limit,
        });
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "NAME", "VERSION", "TYPE", "ACTIVE", "UPDATED"],
          list.map((d) => [
            d.id,
            d.name,
            `v${d.version}`,
            d.stubType,
            d.active ? color.green("yes") : color.dim("no"),
            shortTime(d.updatedAt),
          ]),
          "no deployments",
        );
      }),
    );

  const batch = (verb: string, past: string, call: "stopDeployment" | "startDeployment" | "deleteDeployment" | "restartDeployment") =>
    deployment
      .command(verb)
      .description(`${verb} deployments`)
      .argument("<ref...>", "deployments: ids, unique starts of ids, names (the latest version) or NAME/vN (see beta9 deployment list)")
      .action((ids: string[], _opts: unknown, command: Command) =>
        withClient(command, (client) =>
          forEachId(ids, async (ref) => {
            const id = await resolveRef("deployment", ref, async () => (await client.listDeployments({ limit: 1000 }))
              .map((d) => ({ ...d, names: [d.name, `${d.name}/v${d.version}`] })), (named) => named.sort((a, b) => b.version - a.version)[0]);
            const result = await client[call](id);
            print(`${past} ${result ? describe(result) : id}`);
          }),
        ),
      );
  batch("stop", "stopped", "stopDeployment");
  batch("start", "started", "startDeployment");
  batch("delete", "deleted", "deleteDeployment");
  batch("restart", "restarting", "restartDeployment");
}
