/** `beta9 image`: build images described in code, list and delete them. */
import type { Command } from "commander";
import type { ImageSpec } from "beta9";
import { CliError, EXIT, ReportedError } from "../errors.js";
import { loadExport } from "../load-export.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";
import { forEachId, withClient } from "../session.js";

function toSpec(value: unknown, target: string): ImageSpec {
  const candidate = value as { toSpec?: () => ImageSpec } | null;
  if (typeof candidate?.toSpec !== "function") {
    throw new CliError("NOT_AN_IMAGE", `${target} is not an Image (export one: export const image = new Image().pipInstall([...]))`, EXIT.usage);
  }
  return candidate.toSpec();
}

const mib = (bytes: number | null) => (bytes === null ? "-" : `${(bytes / 1_048_576).toFixed(1)} MiB`);

export function registerImage(program: Command): void {
  const image = program.command("image").description("build, list and delete images");

  image
    .command("build")
    .description("build the Image exported by a file (FILE:EXPORT); an unchanged image is not rebuilt")
    .argument("<target>", "e.g. app.ts:image")
    .option("--json", "print the image as JSON when done")
    .option("-q, --quiet", "do not print the build log")
    .action((target: string, opts: { json?: boolean; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const spec = toSpec(await loadExport(target), target);
        let result = await client.buildImage(spec);
        if (result.status === "building") {
          const started = Date.now();
          for await (const event of client.followImageBuild(result.id)) {
            if (event.kind === "log" && !opts.quiet) process.stderr.write(`${color.dim(`[${((Date.now() - started) / 1000).toFixed(1)}s]`)} ${event.line.line}\n`);
            if (event.kind === "end") result = event.image;
          }
        }
        if (opts.json) printJson(result);
        if (result.status !== "ready") {
          process.stderr.write(`${color.red("build failed")}: ${result.error ?? "unknown error"}\n`);
          throw new ReportedError(EXIT.error);
        }
        if (!opts.json) print(`${color.green("ready")} ${result.id} (${mib(result.size)})`);
      }),
    );

  image
    .command("list")
    .description("list the workspace's images")
    .option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const list = await client.listImages();
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "STATUS", "SIZE", "BASE", "STEPS", "UPDATED"],
          list.map((i) => {
            const spec = i.spec as ImageSpec;
            const status = i.status === "ready" ? color.green(i.status) : i.status === "failed" ? color.red(i.status) : color.yellow(i.status);
            return [i.id, status, mib(i.size), spec.base.kind === "registry" ? spec.base.ref : spec.base.kind, String(spec.steps.length), shortTime(i.updatedAt)];
          }),
          "no images",
        );
      }),
    );

  image
    .command("delete")
    .description("stop using images: they leave this workspace's list and image quota (a live deployment's image is refused: stop it first)")
    .argument("<id...>", "image ids (beta9 image list)")
    .action((ids: string[], _opts: unknown, cmd: Command) =>
      withClient(cmd, (client) => forEachId(ids, async (id) => {
        await client.deleteImage(id);
        print(`deleted image ${id}`);
      })),
    );
}
