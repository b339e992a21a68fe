/** `beta9 sandbox`: list sandboxes, run a command in one (output streamed), terminate them. */
import type { Command } from "commander";
import { ApiError, Sandbox, type Client, type SandboxInfo } from "beta9";
import { forEachId, withClient } from "../session.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";
import { CliError, EXIT, ReportedError } from "../errors.js";
import { resolveRef } from "../resolve.js";

const sandboxes = async (client: Client) => (await client.request<{ items: SandboxInfo[] }>("GET", "/sandbox", { query: { limit: "1000" } })).items;

function stateText(s: SandboxInfo): string {
  if (s.state === "RUNNING") return color.green(s.state);
  if (s.state === "TERMINATED") return `${color.dim(s.state)} (${s.reason ?? "?"})`;
  return color.yellow(s.state);
}

function expiresText(s: SandboxInfo): string {
  if (s.state === "TERMINATED") return "-";
  return s.expiresAt === null ? "never" : shortTime(s.expiresAt);
}

export function registerSandbox(program: Command): void {
  const sandbox = program.command("sandbox").description("inspect sandboxes, run commands in them, terminate them");

  sandbox
    .command("list")
    .description("list the workspace's sandboxes, newest first")
    .option("--json", "print a JSON array")
    .option("-a, --all", "include terminated sandboxes")
    .action((opts: { json?: boolean; all?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const { items } = await client.request<{ items: SandboxInfo[] }>("GET", "/sandbox", { query: opts.all ? {} : { active: "true" } });
        if (opts.json) return printJson(items);
        printTable(
          ["ID", "STATE", "WORKER", "CPU", "MEMORY", "EXPIRES", "CREATED"],
          items.map((s) => [s.id, stateText(s), s.workerId ?? "-", `${s.cpuMillicores}m`, `${s.memoryMiB}Mi`, expiresText(s), shortTime(s.createdAt)]),
          opts.all ? "no sandboxes" : "no live sandboxes (--all shows terminated ones)",
        );
      }),
    );

  sandbox
    .command("exec")
    .description("run a command in a sandbox, streaming its output; exits with its exit code")
    .argument("<id>", "sandbox id, or a unique start of it (see beta9 sandbox list)")
    .argument("<command...>", "the command and its arguments (put -- before it)")
    .option("--cwd <dir>", "working directory in the sandbox (default /workspace)")
    .action((id: string, command: string[], opts: { cwd?: string }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const sb = await Sandbox.connect(await resolveRef("sandbox", id, () => sandboxes(client)), { client });
        try {
          const [bin, ...args] = command;
          const proc = await sb.process.exec(bin!, args, { ...(opts.cwd && { cwd: opts.cwd }) }).catch((err: unknown) => {
            if (err instanceof ApiError && (err.code === "COMMAND_NOT_FOUND" || err.code === "PERMISSION_DENIED")) {
              process.stderr.write(`${err.message}\n`);
              throw new ReportedError(err.code === "COMMAND_NOT_FOUND" ? 127 : 126);
            }
            throw err;
          });
          // Ctrl-C ends the remote process, not just this client.
          const onSigint = () => void proc.kill("SIGINT").catch(() => {});
          process.on("SIGINT", onSigint);
          const pump = async (stream: AsyncIterable<string> & { chunksOf(): AsyncGenerator<string> }, out: NodeJS.WriteStream) => {
            for await (const chunk of stream.chunksOf()) out.write(chunk);
          };
          await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
          const exit = await proc.wait();
          process.off("SIGINT", onSigint);
          const code = exit.exitCode ?? 128;
          if (code !== 0) {
            if (exit.signal) process.stderr.write(color.dim(`killed by ${exit.signal}\n`));
            throw new ReportedError(code);
          }
        } finally {
          await sb.close();
        }
      }),
    );

  sandbox
    .command("terminate")
    .description("end sandboxes and everything running in them")
    .argument("[id...]", "sandbox ids or unique starts of them (see beta9 sandbox list)")
    .option("--all", "every sandbox of the workspace that has not ended")
    .action((ids: string[], opts: { all?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        if (Boolean(opts.all) === ids.length > 0) throw new CliError("USAGE", "give sandbox ids, or --all (not both)", EXIT.usage);
        const refs = opts.all ? (await sandboxes(client)).filter((s) => s.state !== "TERMINATED").map((s) => s.id) : ids;
        if (opts.all && refs.length === 0) return print("no sandbox is running");
        return forEachId(refs, async (ref) => {
          const id = await resolveRef("sandbox", ref, () => sandboxes(client));
          const s = await client.request<SandboxInfo>("POST", `/sandbox/${encodeURIComponent(id)}/terminate`);
          print(`terminated ${s.id}`);
        });
      }),
    );
}
