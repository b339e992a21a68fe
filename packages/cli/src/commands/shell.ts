/**
 * `beta9 shell CONTAINER|SANDBOX [-- CMD…]`: an interactive process with a PTY in a running
 * container or sandbox (the SDK's openShell; the path is in gateway/src/shell/sessions.ts).
 * With a terminal on stdin, it is put in raw mode: every key, Ctrl-C included, goes to the remote
 * process, and window resizes follow. Without one (a pipe), nothing is raw and, unless --tty, the
 * remote side gets pipes too. The CLI exits with the remote exit code.
 */
import type { Command } from "commander";
import { openShell, type Client, type SandboxInfo, type ShellTarget } from "beta9";
import { withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { CliError, ReportedError } from "../errors.js";

interface ShellOptions {
  tty?: boolean;
  cwd?: string;
}

/** The container or sandbox `ref` names: an id, a unique start of one, or a deployment's name (its newest running container). */
async function targetOf(client: Client, ref: string): Promise<ShellTarget> {
  const [containers, sandboxes] = await Promise.all([
    client.listContainers({ active: true }),
    client.request<{ items: SandboxInfo[] }>("GET", "/sandbox", { query: { limit: "1000", active: "true" } }).then((r) => r.items),
  ]);
  const sandboxIds = new Set(sandboxes.map((s) => s.id));
  const candidates: { id: string; names?: string[]; createdAt?: string }[] = [
    ...sandboxes.map((s) => ({ id: s.id })),
    ...containers.filter((c) => c.state === "RUNNING").map((c) => ({ id: c.id, names: c.stubName ? [c.stubName] : [], createdAt: c.createdAt })),
  ];
  const id = await resolveRef("container or sandbox", ref, async () => candidates,
    (named) => [...named].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)))[0]);
  return sandboxIds.has(id) ? { sandboxId: id } : { containerId: id };
}

export function registerShell(program: Command): void {
  program
    .command("shell")
    .description("an interactive shell (a PTY) in a running container or sandbox; exits with the remote exit code")
    .argument("<target>", "container or sandbox id, a unique start of one, or a deployment name (its newest running container)")
    .argument("[command...]", "what to run instead of the default shell (/bin/bash, else /bin/sh); put -- before it")
    .option("-t, --tty", "a remote PTY even when stdin is not a terminal")
    .option("-T, --no-tty", "no remote PTY: plain pipes, stdout and stderr apart (the default when stdin is not a terminal)")
    .option("--cwd <dir>", "working directory in the container (a sandbox's default: /workspace)")
    .addHelpText("after", "\nExamples:\n  beta9 shell 3f2a\n  beta9 shell my-sandbox-id -- python3\n  echo 'ls /' | beta9 shell 3f2a")
    .action((ref: string, command: string[], opts: ShellOptions, cmd: Command) =>
      withClient(cmd, async (client) => {
        if (opts.cwd !== undefined && !opts.cwd.startsWith("/")) throw new CliError("USAGE", "--cwd must be an absolute path", 2);
        const target = await targetOf(client, ref);
        const stdin = process.stdin;
        const stdout = process.stdout;
        const tty = opts.tty ?? Boolean(stdin.isTTY);
        const term = process.env.TERM && /^[A-Za-z0-9._+-]{1,64}$/.test(process.env.TERM) ? process.env.TERM : undefined;
        const session = await openShell({ gateway: client.gateway, token: client.token, tlsCa: client.tlsCa }, target, {
          tty, ...(command.length > 0 && { command }), ...(opts.cwd && { cwd: opts.cwd }), ...(term && { term }),
          ...(stdout.isTTY && { cols: stdout.columns, rows: stdout.rows }),
        });
        const raw = tty && stdin.isTTY === true;
        if (raw) stdin.setRawMode(true);
        const onResize = () => session.resize(stdout.columns, stdout.rows);
        if (stdout.isTTY) stdout.on("resize", onResize); // SIGWINCH
        const onData = (chunk: Buffer) => session.write(chunk);
        const onEnd = () => session.end();
        stdin.on("data", onData);
        stdin.once("end", onEnd);
        stdin.resume();
        let code: number;
        try {
          const pump = async (from: AsyncIterable<Uint8Array>, to: NodeJS.WriteStream) => {
            for await (const chunk of from) if (!to.write(chunk)) await new Promise((r) => to.once("drain", r));
          };
          await Promise.all([pump(session.output, stdout), pump(session.stderr, process.stderr)]);
          code = await session.wait();
        } finally {
          if (raw) stdin.setRawMode(false);
          stdin.off("data", onData);
          stdin.off("end", onEnd);
          stdout.off("resize", onResize);
          stdin.pause();
        }
        if (code !== 0) throw new ReportedError(code);
      }),
    );
}
