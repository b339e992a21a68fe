/** `beta9 container`: run, list, stop and read the logs of containers. */
import { InvalidArgumentError, type Command } from "commander";
import type { Container, ContainerEvent, LogLine } from "beta9";
import { forEachId, withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, print, printJson, printTable, shortTime, terminalSafe } from "../output.js";
import { ReportedError } from "../errors.js";

function envPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq < 1) throw new InvalidArgumentError("must be KEY=VALUE");
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function portList(value: string, previous: number[] = []): number[] {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65_535) throw new InvalidArgumentError("must be a port from 1 to 65535");
  return [...previous, Number(value)];
}

function stateText(c: Container): string {
  switch (c.state) {
    case "RUNNING":
      return color.green(c.state);
    case "EXITED":
      return `${c.reason === "exited" && c.exitCode === 0 ? color.dim("EXITED") : color.red("EXITED")} (${c.reason ?? "?"}${c.exitCode === null ? "" : ` ${c.exitCode}`})`;
    default:
      return color.yellow(c.state);
  }
}

function printLine(line: LogLine): void {
  (line.stream === "stderr" ? process.stderr : process.stdout).write(`${terminalSafe(line.line)}\n`);
}

/**
 * The exit status of `container run`, as a shell would give it: the command's own code, 127 when
 * the command could not be found, 128+9 when it was killed (or ran out of memory), else 1.
 */
export function containerExitStatus(c: { reason: string | null; exitCode: number | null; message?: string | null }): number {
  if (c.reason === "exited" && c.exitCode !== null) return c.exitCode;
  if (c.reason === "failed" && /not found|no such file|ENOENT/i.test(c.message ?? "")) return 127;
  if (c.reason === "killed" || c.reason === "oom") return 137;
  return 1;
}

/** Prints a followed container's output; exits like the container's command did. */
async function follow(events: AsyncGenerator<ContainerEvent>): Promise<void> {
  for await (const event of events) {
    if (event.kind === "log") printLine(event.line);
    if (event.kind === "end") {
      const c = event.container;
      const status = containerExitStatus(c);
      if (status !== 0) {
        const what = status === 127 ? "command not found" : `${c.reason}${c.exitCode === null ? "" : ` (exit code ${c.exitCode})`}`;
        process.stderr.write(color.dim(`container ${c.id} ended: ${what}${c.message ? `: ${c.message}` : ""}\n`));
        throw new ReportedError(status);
      }
    }
  }
}

export function registerContainer(program: Command): void {
  const container = program.command("container").description("run and inspect containers");

  container
    .command("run")
    .description("run a command in a container on a worker the scheduler picks")
    .argument("<command...>", "the command and its arguments (put -- before it)")
    .option("--cpu <cores>", "CPU cores, e.g. 0.5 or 1500m", "1")
    .option("--memory <size>", "memory, e.g. 512Mi or 2Gi", "512Mi")
    .option("--gpu <type>", "a GPU type, e.g. A10G")
    .option("--image <id>", "a built image id, or a unique start of it (default: the worker's host image)")
    .option("--port <port>", "a port the command listens on (repeatable)", portList)
    .option("-e, --env <KEY=VALUE>", "an environment variable (repeatable)", envPair)
    .option("-d, --detach", "print the container id and return instead of following its output")
    .option("--json", "print the container as JSON (implies --detach)")
    .action((command: string[], opts: { cpu: string; memory: string; gpu?: string; image?: string; port?: number[]; env?: Record<string, string>; detach?: boolean; json?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        // Image ids are content hashes: a full one goes as is, a start of one is looked up.
        const imageId = opts.image === undefined || /^[0-9a-f]{64}$/.test(opts.image) ? opts.image
          : await resolveRef("image", opts.image, async () => (await client.listImages({ limit: 1000 })).map((i) => ({ id: i.id })));
        const created = await client.runContainer({
          command, cpu: opts.cpu, memory: opts.memory, ...(opts.gpu && { gpu: opts.gpu }), ...(imageId && { imageId }),
          ...(opts.port && { ports: opts.port }), ...(opts.env && { env: opts.env }),
        });
        if (opts.json) return printJson(created);
        if (opts.detach) return print(created.id);
        process.stderr.write(color.dim(`container ${created.id}${created.message ? ` (${created.message})` : ""}\n`));
        await follow(client.followContainer(created.id));
      }),
    );

  container
    .command("list")
    .description("list the workspace's containers, newest first")
    .option("--json", "print a JSON array")
    .option("-a, --all", "include exited containers")
    .action((opts: { json?: boolean; all?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const list = await client.listContainers(opts.all ? {} : { active: true });
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "NAME", "STATE", "WORKER", "CPU", "MEMORY", "COMMAND", "CREATED"],
          list.map((c) => [c.id, c.stubName ?? "-", stateText(c), c.workerId ?? "-", `${c.cpuMillicores}m`, `${c.memoryMiB}Mi`, c.command.join(" ").slice(0, 40), shortTime(c.createdAt)]),
          opts.all ? "no containers" : "no running containers (--all shows exited ones)",
        );
      }),
    );

  container
    .command("stop")
    .description("stop containers (SIGTERM, then SIGKILL after a grace period)")
    .argument("<id...>", "container ids or unique starts of them (see beta9 container list)")
    .action((ids: string[], _opts: unknown, cmd: Command) =>
      withClient(cmd, (client) => forEachId(ids, async (ref) => {
        const id = await resolveRef("container", ref, () => client.listContainers());
        print(`stopping ${(await client.stopContainer(id)).id}`);
      })),
    );

  container
    .command("logs")
    .description("print a container's output (stdout to stdout, stderr to stderr)")
    .argument("<id>", "container id, or a unique start of it")
    .option("-f, --follow", "keep printing new lines until the container exits")
    .action((ref: string, opts: { follow?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const id = await resolveRef("container", ref, () => client.listContainers());
        if (opts.follow) return follow(client.followContainer(id));
        for (const line of await client.containerLogs(id)) printLine(line);
      }),
    );
}
