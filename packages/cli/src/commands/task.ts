/** `beta9 task`: list, inspect and cancel tasks of task queues and functions. */
import type { Command } from "commander";
import { TASK_STATUSES, type TaskStatus } from "@beta9/protocol";
import type { Task } from "beta9";
import { forEachId, withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";

function statusText(t: Task): string {
  switch (t.status) {
    case "COMPLETE":
      return color.green(t.status);
    case "ERROR": case "TIMEOUT": case "EXPIRED":
      return color.red(t.status);
    case "CANCELLED":
      return color.dim(t.status);
    case "RETRY":
      return color.yellow(`RETRY ${t.retries}/${t.maxRetries}`);
    default:
      return color.yellow(t.status);
  }
}

export function registerTask(program: Command): void {
  const task = program.command("task").description("list, inspect and cancel tasks");

  task
    .command("list")
    .description("list the workspace's tasks, newest first")
    .option("--json", "print a JSON array")
    .option("--limit <n>", "at most this many", "50")
    .option("--status <status>", `only tasks in this status, or these (comma-separated): ${TASK_STATUSES.join(", ")}`)
    .option("--deployment <name>", "only the tasks of this deployment (every version)")
    .option("--stub <id>", "only the tasks of this stub")
    .action((opts: { json?: boolean; limit: string; status?: string; deployment?: string; stub?: string }, cmd: Command) =>
      withClient(cmd, async (client) => {
        // The gateway filters (and says what is wrong with a filter); upper case is only a convenience.
        const status = opts.status?.toUpperCase() as TaskStatus | undefined;
        const list = await client.listTasks({
          limit: Number(opts.limit), ...(status && { status }), ...(opts.deployment && { deployment: opts.deployment }), ...(opts.stub && { stub: opts.stub }),
        });
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "NAME", "STATUS", "RETRIES", "CREATED", "ENDED", "ERROR"],
          list.map((t) => [
            t.id, t.stubName ?? t.stubId, statusText(t), `${t.retries}/${t.maxRetries}`, shortTime(t.createdAt),
            t.status === "RETRY" ? `next ${shortTime(t.nextAttemptAt)}` : shortTime(t.endedAt), (t.error ?? "").slice(0, 60),
          ]),
          opts.status || opts.deployment || opts.stub ? "no task matches" : "no tasks",
        );
      }),
    );

  task
    .command("get")
    .description("print one task with its result or error")
    .argument("<id>", "task id, or a unique start of it")
    .option("--json", "print it as JSON")
    .action((ref: string, opts: { json?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const t = await client.getTask(await resolveRef("task", ref, () => client.listTasks({ limit: 1000 })));
        if (opts.json) return printJson(t);
        print(`${t.id}  ${statusText(t)}  retries ${t.retries}/${t.maxRetries}`);
        print(`workload ${t.stubName ?? "?"} (stub ${t.stubId})`);
        // Its containers cannot be placed: say what for, with the figures, instead of a silent PENDING.
        if (t.waiting) print(`${color.yellow(t.waiting.message)} (since ${shortTime(t.waiting.since)})`);
        if (t.status === "RETRY" && t.nextAttemptAt) print(`next attempt ${shortTime(t.nextAttemptAt)}`);
        print(`created ${shortTime(t.createdAt)}  started ${shortTime(t.startedAt)}  ended ${shortTime(t.endedAt)}`);
        if (t.error) print(`error: ${t.error}`);
        if (t.status === "COMPLETE") print(`result: ${JSON.stringify(t.result)}`);
      }),
    );

  task
    .command("cancel")
    .description("cancel pending or running tasks (a running handler sees its signal abort)")
    .argument("<id...>", "task ids or unique starts of them")
    .action((ids: string[], _opts: unknown, cmd: Command) =>
      withClient(cmd, (client) => forEachId(ids, async (ref) => {
        const id = await resolveRef("task", ref, () => client.listTasks({ limit: 1000 }));
        print(`${id} ${statusText(await client.cancelTask(id))}`);
      })),
    );
}
