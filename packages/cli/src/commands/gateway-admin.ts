/**
 * Operator commands run on the gateway's machine, beside `beta9 gateway` (they act on its data
 * dir and store directly, not through the API): `beta9 gateway rotate-secrets-key`.
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Option, type Command } from "commander";
import { CliError, EXIT } from "../errors.js";
import { importPlatform } from "../platform.js";
import { print, printJson } from "../output.js";

interface RotateCliOptions {
  dataDir?: string;
  store?: string;
  newKeyFile?: string;
  keepOldKey?: boolean;
  json?: boolean;
}

export function registerGatewayAdmin(gateway: Command): void {
  gateway.command("rotate-secrets-key")
    .description("re-encrypt every secret under a new key, in one transaction (stop every gateway on this store first; safe to run again if interrupted)")
    .option("--data-dir <dir>", "the gateway's data dir (default: $BETA9_DATA_DIR or ~/.beta9/data)")
    .addOption(new Option("--store <store>", "sqlite (the data dir's) or the postgres:// URL the gateway uses").env("BETA9_STORE"))
    .option("--new-key-file <file>", "the new key (32 bytes, base64 or hex; e.g. openssl rand -base64 32); default: a random one")
    .option("--keep-old-key", "keep the old key as secrets.key.old (default: removed once done)")
    .option("--json", "print the result as JSON")
    .action(async (opts: RotateCliOptions, command: Command) => {
      // `--data-dir` after the subcommand may land on `beta9 gateway`'s own option of that name.
      const parent = command.parent?.opts() as { dataDir?: string; store?: string } | undefined;
      const store = opts.store ?? parent?.store;
      const dataDir = resolve(opts.dataDir ?? parent?.dataDir ?? (process.env.BETA9_DATA_DIR || join(homedir(), ".beta9", "data")));
      const { rotateSecretsKeyInDataDir, RotateError, DataDirLockedError } = await importPlatform("@beta9/gateway", "gateway rotate-secrets-key");
      try {
        const result = await rotateSecretsKeyInDataDir({
          dataDir, ...(store !== undefined && { storeSpec: store }), ...(opts.newKeyFile !== undefined && { newKeyFile: opts.newKeyFile }),
          ...(process.env.BETA9_SECRETS_KEY && { envKey: process.env.BETA9_SECRETS_KEY }), keepOldKey: opts.keepOldKey === true,
        });
        if (opts.json) return printJson(result);
        const resumed = result.resumed > 0 ? ` (${result.resumed} of them by an earlier, interrupted run)` : "";
        print(`re-encrypted ${result.rotated} secret${result.rotated === 1 ? "" : "s"} under the new key${resumed}`);
        if (result.keyFile) print(`the key is now in ${result.keyFile}${result.oldKeyKept ? `; the old one kept in ${result.oldKeyKept}` : ""}`);
        else print("start the gateway with BETA9_SECRETS_KEY set to the new key (the old one no longer opens the secrets)");
      } catch (err) {
        if (err instanceof RotateError || err instanceof DataDirLockedError || (err as Error).name === "VaultKeyError") {
          throw new CliError("ROTATE_FAILED", (err as Error).message, EXIT.usage);
        }
        throw err;
      }
    });
}
