/** `beta9 token`: API tokens of the current workspace. */
import { Option, type Command } from "commander";
import { TOKEN_TYPES, type TokenType } from "@beta9/protocol";
import { withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";

export function registerToken(program: Command): void {
  const token = program.command("token").description("manage API tokens of the current workspace");

  token
    .command("list")
    .description("list tokens (keys are never shown again; the prefix tells them apart)")
    .option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const list = await client.listTokens();
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "TYPE", "NAME", "PREFIX", "ACTIVE", "CREATED"],
          list.map((t) => [
            t.id,
            t.type,
            t.name ?? "-",
            t.prefix,
            t.active ? color.green("yes") : color.red("revoked"),
            shortTime(t.createdAt),
          ]),
          "no tokens",
        );
      }),
    );

  token
    .command("create")
    .description("create a token and print its key (shown once)")
    .addOption(new Option("--type <type>", "token type").choices(TOKEN_TYPES).default("workspace"))
    .option("--name <name>", "a label to recognise it by")
    .option("--json", "print the token, key included, as JSON")
    .action((opts: { type: TokenType; name?: string; json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const created = await client.createToken(opts.name === undefined ? { type: opts.type } : { type: opts.type, name: opts.name });
        if (opts.json) return printJson(created);
        print(`created ${created.type} token ${created.id}${created.name ? ` (${created.name})` : ""}`);
        print(`key (shown once, save it now): ${color.bold(created.key)}`);
      }),
    );

  token
    .command("revoke")
    .description("revoke a token; requests with it fail from now on")
    .argument("<id>", "token id, a unique start of it, or its name (see beta9 token list)")
    .action((ref: string, _opts: unknown, command: Command) =>
      withClient(command, async (client) => {
        const id = await resolveRef("token", ref, async () => (await client.listTokens({ limit: 1000 })).map((t) => ({ id: t.id, names: t.name ? [t.name] : [] })));
        const revoked = await client.revokeToken(id);
        print(`revoked token ${revoked.id}`);
      }),
    );
}
