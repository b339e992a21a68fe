/** `beta9 secret`: write-only values that workloads and sandboxes get as environment variables. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { Secret } from "@beta9/protocol";
import { CliError, EXIT } from "../errors.js";
import { forEachId, withClient } from "../session.js";
import { print, printJson, printTable, shortTime } from "../output.js";

interface ValueOptions { value?: string; fromFile?: string }

/** The value from exactly one of --value, --from-file, or `-` (stdin); a trailing newline of a file or stdin is dropped. */
async function valueOf(opts: ValueOptions, dash: string | undefined): Promise<string> {
  const given = [opts.value !== undefined, opts.fromFile !== undefined, dash === "-"].filter(Boolean).length;
  if (given !== 1) throw new CliError("USAGE", "give the value once: --value V, --from-file FILE, or - to read it from stdin", EXIT.usage);
  if (opts.value !== undefined) return opts.value;
  let text: string;
  if (opts.fromFile !== undefined) {
    try {
      text = readFileSync(opts.fromFile, "utf8");
    } catch (err) {
      throw new CliError("USAGE", `cannot read ${opts.fromFile}: ${(err as Error).message}`, EXIT.usage);
    }
  } else {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString("utf8");
  }
  return text.replace(/\r?\n$/, "");
}

export function registerSecret(program: Command): void {
  const secret = program.command("secret").description("manage secrets: values workloads and sandboxes get as environment variables, never shown again");
  const withValue = (c: Command) => c
    .option("--value <value>", "the value (visible in your shell history; prefer --from-file or -)")
    .option("--from-file <file>", "read the value from a file");

  withValue(secret.command("create").description("create a secret; its name is the environment variable it becomes")
    .argument("<name>", "e.g. OPENAI_API_KEY").argument("[-]", "read the value from stdin"))
    .action((name: string, dash: string | undefined, opts: ValueOptions, command: Command) =>
      withClient(command, async (client) => {
        const value = await valueOf(opts, dash);
        await client.request<Secret>("POST", "/secret", { body: { name, value } });
        print(`created secret ${name}`);
      }));

  withValue(secret.command("update").description("change a secret's value; containers started from now on get it (restart a deployment to roll it)")
    .argument("<name>").argument("[-]", "read the value from stdin"))
    .action((name: string, dash: string | undefined, opts: ValueOptions, command: Command) =>
      withClient(command, async (client) => {
        const value = await valueOf(opts, dash);
        await client.request<Secret>("PUT", `/secret/${encodeURIComponent(name)}`, { body: { value } });
        print(`updated secret ${name}`);
      }));

  secret.command("list").description("list secrets: names and dates, never values").option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const { items } = await client.request<{ items: Secret[] }>("GET", "/secret");
        if (opts.json) return printJson(items);
        printTable(["NAME", "CREATED", "UPDATED"], items.map((s) => [s.name, shortTime(s.createdAt), shortTime(s.updatedAt)]), "no secrets (beta9 secret create NAME -)");
      }));

  secret.command("delete").description("delete secrets").argument("<name...>")
    .action((names: string[], _opts: unknown, command: Command) =>
      withClient(command, (client) => forEachId(names, async (name) => {
        await client.request("DELETE", `/secret/${encodeURIComponent(name)}`);
        print(`deleted secret ${name}`);
      })));
}
