/**
 * `beta9 serve FILE:EXPORT`: an ephemeral copy of an endpoint, task queue or function with
 * exactly one container, its logs streamed here, reloaded on every save of a file it imports.
 * Ctrl-C (or SIGTERM) ends the session and its container; if this process dies without a word,
 * the gateway ends the session when its heartbeats stop.
 */
import type { Command } from "commander";
import type { InputSchema } from "@beta9/protocol";
import { serveWorkload, type ServeEvent } from "beta9";
import { asCliError } from "../bundle.js";
import { CliError, EXIT } from "../errors.js";
import { cliCommand, color, invokeLine, print, terminalSafe } from "../output.js";
import { withClient } from "../session.js";
import { loadWorkload } from "./deploy.js";

function describe(event: ServeEvent): string | undefined {
  switch (event.kind) {
    case "ready":
      return `${color.green("serving")} ${event.url} (ready in ${event.ms} ms); watching for changes, Ctrl-C to stop`;
    case "reloaded":
      return `${color.green("reloaded")} in ${event.ms} ms (save → new container answering; reload ${event.reloads})`;
    case "unchanged":
      return color.dim("saved, but the bundle is unchanged");
    case "reload-failed":
      return `${color.red("reload failed")}: ${event.error.message} (still serving the previous code)`;
    case "ended":
      return `${color.dim("session ended")}: ${event.reason}`;
    default:
      return undefined;
  }
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("run an ephemeral copy of a workload (one container) with its logs here and hot reload on save")
    .argument("<target>", "FILE:EXPORT of an endpoint(), taskQueue() or fn()")
    .option("-q, --quiet", "do not print the image build log")
    .option("--no-watch", "do not reload on save")
    .action((target: string, opts: { quiet?: boolean; watch: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const { workload, source, bundle } = await loadWorkload(target);
        if (workload.kind === "schedule") throw new CliError("NOT_SERVABLE", `${target} is a schedule; serve runs endpoints, task queues and functions (deploy a schedule)`, EXIT.usage);
        const handle = await serveWorkload(client, workload, source, {
          watch: opts.watch,
          ...(bundle && { bundle }),
          onEvent: (e) => {
            const text = describe(e);
            if (text) process.stderr.write(`${text}\n`);
          },
          onLog: (line) => print(`${color.dim(line.stream === "stderr" ? "err" : "out")} ${terminalSafe(line.line)}`),
          ...(!opts.quiet && { onBuildLog: (line: string) => process.stderr.write(`${color.dim("image:")} ${line}\n`) }),
        }).catch((err: unknown) => {
          throw asCliError(err);
        });
        if (handle.url.endsWith("/")) print(`open: curl ${handle.url} -H "Authorization: Bearer $(${cliCommand()} config token)"`);
        else print(invokeLine(handle.url, workload.config.inputs as InputSchema | undefined));
        const stop = () => void handle.stop();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        await handle.done;
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }),
    );
}
