/** `beta9 pool`: worker pools (machines and workloads name one to meet). */
import type { Command } from "commander";
import type { Pool } from "@beta9/protocol";
import { withClient } from "../session.js";
import { print, printJson, printTable, shortTime } from "../output.js";

export function registerPool(program: Command): void {
  const pool = program.command("pool").description("manage worker pools");

  pool
    .command("list")
    .description("list pools (pool default always exists for placement, even if not listed)")
    .option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const { items } = await client.request<{ items: Pool[] }>("GET", "/pool");
        if (opts.json) return printJson(items);
        printTable(["NAME", "DESCRIPTION", "CREATED"], items.map((p) => [p.name, p.description || "-", shortTime(p.createdAt)]), "no pools besides default");
      }),
    );

  pool
    .command("create")
    .description("create a pool (admin token)")
    .argument("<name>", "lowercase letters, digits, '.', '_' or '-'")
    .option("--description <text>", "what the pool is for")
    .option("--json", "print the pool as JSON")
    .action((name: string, opts: { description?: string; json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const created = await client.request<Pool>("POST", "/pool", {
          body: opts.description === undefined ? { name } : { name, description: opts.description },
        });
        if (opts.json) return printJson(created);
        print(`created pool ${created.name}`);
      }),
    );
}
