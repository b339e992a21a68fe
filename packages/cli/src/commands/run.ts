/**
 * `beta9 run FILE:EXPORT --input JSON`: call a workload once, remotely, without deploying it: a
 * function or endpoint answers with its result; a task queue's task is put and waited for.
 */
import { InvalidArgumentError, type Command } from "commander";
import { checkInput, exampleInput, type InputSchema } from "@beta9/protocol";
import { ApiError } from "beta9";
import { CliError, EXIT } from "../errors.js";
import { print } from "../output.js";
import { withClient } from "../session.js";
import { loadWorkload, prepareStub } from "./deploy.js";

/**
 * No --input: `{}` when the workload's schema takes it (every field optional), null when it
 * declares none; a usage error, with an input that fits, when it needs fields.
 */
function defaultInput(target: string, schema: InputSchema | undefined): unknown {
  if (schema === undefined) return null;
  const empty = schema.type === "object" ? {} : null;
  const problem = checkInput(schema, empty);
  if (problem === undefined) return empty;
  throw new CliError("USAGE", `${target} needs an input (${problem}): add --input '${JSON.stringify(exampleInput(schema))}'`, EXIT.usage);
}

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
    .option("--input <json>", "the workload's input, as JSON (default: {} when its schema needs no field)", json)
    .option("-q, --quiet", "do not print the image build log")
    .action((target: string, opts: { input: unknown; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const loaded = await loadWorkload(target);
        const schema = loaded.workload.config.inputs as InputSchema | undefined;
        const input = opts.input !== undefined ? opts.input : defaultInput(target, schema);
        // Checked here as the gateway would, before any image is built or code uploaded.
        const problem = schema && opts.input !== undefined ? checkInput(schema, input) : undefined;
        if (problem) throw new CliError("INPUT_INVALID", `${problem}; e.g. --input '${JSON.stringify(exampleInput(schema!))}'`, EXIT.usage);
        const prepared = await prepareStub(client, loaded, "serve", opts.quiet === true);
        const stubId = prepared.stub.id;
        try {
          if (prepared.kind === "function") return print(JSON.stringify(await client.callFunction({ stubId }, input)));
          if (prepared.kind === "endpoint") return print(JSON.stringify(await client.callEndpoint({ stubId }, input)));
          if (prepared.kind === "taskqueue") {
            const task = await client.waitForTask(await client.putTask({ stubId }, input));
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
