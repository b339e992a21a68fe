/** `beta9 store migrate`: moves a single-node gateway's state (SQLite in its data dir) into Postgres. */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import { CliError, EXIT } from "../errors.js";
import { color, print, printJson } from "../output.js";
import { importPlatform } from "../platform.js";

function postgresUrl(value: string): string {
  if (/^postgres(ql)?:\/\//i.test(value)) return value;
  throw new InvalidArgumentError("must be a postgres://user:password@host:5432/database URL");
}

export function registerStore(program: Command): void {
  const store = program.command("store").description("the gateway's durable state: move it from the embedded SQLite to Postgres");

  store
    .command("migrate")
    .description(
      "copy every row of a data dir's SQLite store into an empty Postgres database, in one transaction (stop the gateway first). " +
        "Then start `beta9 gateway --store URL --data-dir DIR` with the same data dir: objects, logs.db and secrets.key stay there",
    )
    .requiredOption("--to <url>", "the Postgres database (empty; migrated to this version's schema first)", postgresUrl)
    .option("--data-dir <dir>", "the gateway's data dir (default: $BETA9_DATA_DIR or ~/.beta9/data)")
    .option("--json", "print the rows copied per table as JSON")
    .action(async (opts: { to: string; dataDir?: string; json?: boolean }) => {
      const dataDir = resolve(opts.dataDir ?? (process.env.BETA9_DATA_DIR || join(homedir(), ".beta9", "data")));
      const gateway = await importPlatform("@beta9/gateway", "store migrate");
      const target = gateway.describeStore(opts.to, dataDir);
      let result: Awaited<ReturnType<typeof gateway.copySqliteToPostgres>>;
      try {
        result = await gateway.copySqliteToPostgres(dataDir, opts.to, (table, rows) => {
          if (!opts.json) print(color.dim(`${table}: ${rows} row${rows === 1 ? "" : "s"}`));
        });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        if (err instanceof gateway.StoreCopyRefusedError) throw new CliError("STORE_COPY_REFUSED", reason);
        if (err instanceof Error && err.name === "StoreUnavailableError") throw new CliError("STORE_UNAVAILABLE", reason, EXIT.unreachable);
        throw err;
      }
      if (opts.json) return printJson(result);
      const total = result.tables.reduce((sum, t) => sum + t.rows, 0);
      print(`copied ${total} rows from ${join(dataDir, "gateway.db")} to ${target} (schema version ${result.schemaVersion})`);
      // The URL as the user typed it (password included: it is their terminal), so the line pastes.
      print(`next: beta9 gateway --store '${opts.to.replaceAll("'", "'\\''")}' --data-dir '${dataDir}'`);
    });
}
