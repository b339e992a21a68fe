/** `beta9 workspace`: tenants of the gateway (creating and listing them needs an admin token). */
import type { Command } from "commander";
import { withClient } from "../session.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";

export function registerWorkspace(program: Command): void {
  const workspace = program.command("workspace").description("manage workspaces (admin token)");

  workspace
    .command("create")
    .description("create a workspace and print its first token (shown once)")
    .argument("<name>", "workspace name: lowercase letters, digits, '.', '_' or '-'")
    .option("--json", "print {workspace, token} as JSON")
    .action((name: string, opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client, context) => {
        const created = await client.createWorkspace(name);
        if (opts.json) return printJson(created);
        print(`created workspace ${created.workspace.name} (${created.workspace.id})`);
        print(`workspace token (shown once, save it now): ${color.bold(created.token.key)}`);
        print(color.dim(`use it: beta9 config create ${created.workspace.name} --gateway ${context.gateway} --token ${created.token.key}`));
      }),
    );

  workspace
    .command("list")
    .description("list all workspaces")
    .option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const list = await client.listWorkspaces();
        if (opts.json) return printJson(list);
        printTable(["ID", "NAME", "CREATED"], list.map((w) => [w.id, w.name, shortTime(w.createdAt)]), "no workspaces");
      }),
    );
}
