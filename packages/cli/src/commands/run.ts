/**
 * `beta9 run FILE:EXPORT --input JSON`: call a workload once, remotely, without deploying it: a
 * function or endpoint answers with its result; a task queue's task is put and waited for.
 */
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
    .description("call a function, endpoint or task queue once on the platform and print its result, without deploying it")
    .argument("<target>", "FILE:EXPORT (TypeScript) or FILE.py:FUNCTION (Python) of a function, endpoint or task queue")
    .option("--input <json>", "the workload's input, as JSON", json, null)
    .option("-q, --quiet", "do not print the image build log")
    .action((target: string, opts: { input: unknown; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const prepared = await prepareStub(client, target, "serve", opts.quiet === true);
        const stubId = prepared.stub.id;
        try {
          if (prepared.kind === "function") return print(JSON.stringify(await client.callFunction({ stubId }, opts.input)));
          if (prepared.kind === "endpoint") return print(JSON.stringify(await client.callEndpoint({ stubId }, opts.input)));
          if (prepared.kind === "taskqueue") {
            const task = await client.waitForTask(await client.putTask({ stubId }, opts.input));
            if (task.status !== "COMPLETE") throw new CliError("HANDLER_ERROR", `task ${task.id} ended ${task.status}: ${task.error ?? "no detail"}`);
            return print(JSON.stringify(task.result ?? null));
          }
          throw new CliError("NOT_CALLABLE", `${target} is a ${prepared.kind}; it runs on its own cron once deployed (beta9 deploy ${target})`, EXIT.usage);
        } catch (err) {
          if (err instanceof ApiError && err.code === "HANDLER_ERROR") throw new CliError("HANDLER_ERROR", err.message);
          throw err;
        }
      }),
    );
}
