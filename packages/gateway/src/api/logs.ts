/**
 * `GET /api/v1/logs`: durable container logs (logs/) by container, sandbox, deployment, stub or
 * task, after a restart too. With follow=true, a text/event-stream of `log` events (history first,
 * then each new line) that ends with `end` when the followed thing is over: a container or
 * sandbox when it exits, a task shortly after it ends; a deployment's stream runs until closed.
 */
import type { FastifyInstance } from "fastify";
import {
  API_PREFIX, Beta9Error, LOG_SELECTORS, LogEntrySchema, LogsQuerySchema, parseSince, type LogEntry, type LogsQuery, type Task,
} from "@beta9/protocol";
import { isTerminal } from "../tasks/dispatcher.js";
import { SqliteLogStore } from "../logs/sqlite.js";
import type { LogSelector, LogSource, LogStore } from "../logs/types.js";
import { found, Items, responses, type GatewayContext } from "./common.js";
import { streamEvents } from "./sse.js";

export const DEFAULT_LOG_LIMIT = 1000;
export const MAX_LOG_LIMIT = 10_000;
/** A task's last lines reach the gateway a moment after its outcome (the worker batches for 20 ms): its follow waits this long before it ends. */
const TASK_END_GRACE_MS = 1000;
/** Log streams one workspace may follow at once. */
export const MAX_FOLLOWS_PER_WORKSPACE = 64;

/** What a request reads: the store's selector, the live lines that match, and how its follow ends. */
interface Target {
  select: LogSelector;
  matches(source: LogSource, entry: LogEntry): boolean;
  /** Calls `ended` once the followed thing is over (at once if it already is); returns the unsubscribe. */
  onEnd?(ended: (reason: string) => void): () => void;
}

async function containerTarget(ctx: GatewayContext, logs: LogStore, workspaceId: string, containerId: string, kind: string, ref: string): Promise<Target> {
  const record = ctx.scheduler.containers.getInWorkspace(workspaceId, containerId);
  // Gone from the live registry (long exited, or before a restart): its stored lines are its log.
  if (!record && (await logs.ownerOf(containerId)) !== workspaceId) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind, id: ref });
  return {
    select: { containerId },
    matches: (source) => source.containerId === containerId,
    onEnd(ended) {
      if (!record || record.state === "EXITED") {
        ended(`the ${kind} ended`);
        return () => undefined;
      }
      return ctx.scheduler.containers.subscribe(containerId, (e) => {
        if (e.kind === "state" && e.container.state === "EXITED") ended(`the ${kind} ended`);
      });
    },
  };
}

function stubTarget(stubId: string): Target {
  return { select: { stubId }, matches: (source) => source.stubId === stubId };
}

async function target(ctx: GatewayContext, logs: LogStore, workspaceId: string, query: LogsQuery): Promise<Target> {
  const given = LOG_SELECTORS.filter((k) => query[k] !== undefined);
  if (given.length !== 1) {
    throw new Beta9Error("BAD_REQUEST", { reason: `give exactly one of ${LOG_SELECTORS.join(", ")} (got ${given.length === 0 ? "none" : given.join(", ")})` });
  }
  const { store } = ctx;
  if (query.containerId !== undefined) return containerTarget(ctx, logs, workspaceId, query.containerId, "container", query.containerId);
  if (query.sandboxId !== undefined) {
    const sandbox = found(await store.sandboxes.get(workspaceId, query.sandboxId), "sandbox", query.sandboxId);
    return containerTarget(ctx, logs, workspaceId, sandbox.containerId, "sandbox", sandbox.id);
  }
  if (query.deploymentId !== undefined) return stubTarget(found(await store.deployments.get(workspaceId, query.deploymentId), "deployment", query.deploymentId).stubId);
  if (query.stubId !== undefined) return stubTarget(found(await store.stubs.get(workspaceId, query.stubId), "stub", query.stubId).id);
  // An endpoint call's task id has no stored task: its lines are found all the same.
  const taskId = query.taskId!;
  const task = await store.tasks.get(workspaceId, taskId);
  return {
    select: { taskId },
    matches: (source, entry) => entry.taskId === taskId && source.workspaceId === workspaceId,
    ...(task && {
      onEnd(ended: (reason: string) => void) {
        let timer: NodeJS.Timeout | undefined;
        const over = (t: Task) => {
          if (isTerminal(t)) timer ??= setTimeout(() => ended(`the task ended ${t.status}`), TASK_END_GRACE_MS);
        };
        ctx.dispatcher.events.on(taskId, over);
        over(task);
        return () => {
          clearTimeout(timer);
          ctx.dispatcher.events.off(taskId, over);
        };
      },
    }),
  };
}

export function logRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  /** Follows open per workspace. */
  const follows = new Map<string, number>();
  // An app built without a log store (route tests) gets one in memory for its life.
  const logs = ctx.logs ?? new SqliteLogStore(":memory:", { pruneIntervalMs: 0 });
  if (!ctx.logs) app.addHook("onClose", () => logs.close());

  app.get<{ Querystring: LogsQuery }>(`${API_PREFIX}/logs`, {
    config: { access: "read" },
    schema: {
      tags: ["logs"], querystring: LogsQuerySchema, response: responses({ 200: Items(LogEntrySchema) }),
      summary: "Stored container log lines of one container, sandbox, deployment, stub or task (the last `limit`, or the first after `after`); " +
        "with follow=true a text/event-stream of `log` events, then `end` when the container exits or the task ends",
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const q = request.query;
    const what = await target(ctx, logs, workspaceId, q);
    const sinceMs = q.since === undefined ? undefined : parseSince(q.since);
    if (q.since !== undefined && sinceMs === undefined) {
      throw new Beta9Error("VALIDATION_FAILED", { location: "querystring", path: ".since", reason: "must be a duration like 10m, 2h or 7d, or an ISO 8601 time" });
    }
    const limit = Math.min(Math.max(q.limit === undefined ? DEFAULT_LOG_LIMIT : Number(q.limit), 1), MAX_LOG_LIMIT);
    const afterSeq = q.after === undefined ? undefined : Number(q.after);
    const read = () => logs.query({ workspaceId, select: what.select, limit, ...(sinceMs !== undefined && { sinceMs }), ...(afterSeq !== undefined && { afterSeq }) });
    if (q.follow !== "true") return { items: await read() };
    // Each follow is matched against every stored batch: bounded per workspace, so one tenant's
    // hundreds of follows cannot slow every tenant's log ingestion.
    const open = follows.get(workspaceId) ?? 0;
    if (open >= MAX_FOLLOWS_PER_WORKSPACE) {
      throw new Beta9Error("QUOTA_EXCEEDED", { count: open, kind: "log streams followed", limit: MAX_FOLLOWS_PER_WORKSPACE, hint: "stop some beta9 logs -f (or other follows) first" });
    }
    follows.set(workspaceId, open + 1);
    streamEvents(request, reply, (emit, end) => {
      // Subscribed before the history is read, so no line falls between the two; seq dedupes.
      let last = afterSeq ?? 0;
      let live: LogEntry[] | undefined = [];
      const send = (e: LogEntry) => {
        if (e.seq <= last) return;
        last = e.seq;
        emit("log", e);
      };
      const unsubscribe = logs.subscribe((source, entries) => {
        for (const e of entries) if (what.matches(source, e)) (live ? live.push(e) : send(e));
      });
      let endedReason: string | undefined;
      const stopEnd = what.onEnd?.((reason) => (live ? (endedReason = reason) : end({ reason })));
      void read().then((history) => {
        for (const e of history) send(e);
        for (const e of live ?? []) send(e);
        live = undefined;
        if (endedReason !== undefined) end({ reason: endedReason });
      }, (err: unknown) => end({ reason: `reading the log failed: ${(err as Error).message}` }));
      let released = false;
      return () => {
        unsubscribe();
        stopEnd?.();
        // Called at the end and again when the connection closes: counted once.
        if (released) return;
        released = true;
        const left = (follows.get(workspaceId) ?? 1) - 1;
        if (left > 0) follows.set(workspaceId, left);
        else follows.delete(workspaceId);
      };
    });
  });
}
