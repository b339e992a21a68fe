/** `beta9 run FILE:EXPORT --input JSON`: run a function once, remotely, without deploying it. */
import { InvalidArgumentError, type Command } from "commander";
import { ApiError } from "beta9";
import { CliError, EXIT } from "../errors.js";
import { print } from "../output.js";
import { withClient } from "../session.js";
import { prepareStub } from "./deploy.js";

function json(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`must be JSON (${(err as Error).message})`);
  }
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run a function (fn) once on the platform and print its result, without deploying it")
    .argument("<target>", "FILE:EXPORT of an fn(...)")
    .option("--input <json>", "the function's input", json, null)
    .option("-q, --quiet", "do not print the image build log")
    .action((target: string, opts: { input: unknown; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const prepared = await prepareStub(client, target, "serve", opts.quiet === true);
        if (prepared.kind !== "function") throw new CliError("NOT_A_FUNCTION", `${target} is a ${prepared.kind}; beta9 run runs functions made with fn()`, EXIT.usage);
        try {
          print(JSON.stringify(await client.callFunction({ stubId: prepared.stub.id }, opts.input)));
        } catch (err) {
          if (err instanceof ApiError && err.code === "HANDLER_ERROR") throw new CliError("HANDLER_ERROR", err.message);
          throw err;
        }
      }),
    );
}
