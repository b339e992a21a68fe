/**
 * Durable container logs: what `GET /api/v1/logs` takes and answers, and how a runner tags the
 * lines one task printed so the worker can say which task they belong to.
 *
 * Tagging: a runner starts each line printed while a task runs with
 * `TASK_LOG_TAG_PREFIX + taskId + TASK_LOG_TAG_END`. That is an APC escape sequence, which
 * terminals ignore, so a runner started by hand still prints readable output. The worker strips
 * the tag and sends the task id beside the line (LogLine.taskId); nothing else parses it.
 */
import { Type, type Static } from "@sinclair/typebox";
import { StringEnum } from "./entities.js";

export const TASK_LOG_TAG_PREFIX = "\u001b_beta9-task:";
export const TASK_LOG_TAG_END = "\u001b\\";
/** Task ids longer than this are not tags (the gateway makes UUIDs). */
export const MAX_TASK_ID_CHARS = 128;

/**
 * The task a line was tagged with and the line without its tag; an untagged (or malformed) line
 * comes back as it was.
 *
 * @example
 * untagLogLine(`${TASK_LOG_TAG_PREFIX}t-1${TASK_LOG_TAG_END}hello`); // { taskId: "t-1", line: "hello" }
 */
export function untagLogLine(line: string): { taskId?: string; line: string } {
  // One character compare first: this runs on every line a worker reads.
  if (line.charCodeAt(0) !== 0x1b || !line.startsWith(TASK_LOG_TAG_PREFIX)) return { line };
  const end = line.indexOf(TASK_LOG_TAG_END, TASK_LOG_TAG_PREFIX.length);
  const length = end - TASK_LOG_TAG_PREFIX.length;
  if (end === -1 || length < 1 || length > MAX_TASK_ID_CHARS) return { line };
  return { taskId: line.slice(TASK_LOG_TAG_PREFIX.length, end), line: line.slice(end + TASK_LOG_TAG_END.length) };
}

/** A stored log line: which container printed it, for which task (if tagged), and its place in the log. */
export const LogEntrySchema = Type.Object({
  seq: Type.Integer({ description: "Position in the gateway's log (increasing); pass it as `after` to read on" }),
  containerId: Type.String(),
  taskId: Type.Union([Type.String(), Type.Null()], { description: "The task the runner was running when the line was printed" }),
  stream: StringEnum(["stdout", "stderr"] as const),
  line: Type.String(),
  at: Type.Number({ description: "Unix ms when the worker read the line" }),
});
export type LogEntry = Static<typeof LogEntrySchema>;

const Id = Type.String({ minLength: 1, maxLength: 128 });
/** `10m`, `90s`, `2h`, `7d` ago, or an ISO 8601 time. */
const SINCE = /^([0-9]{1,9})(ms|s|m|h|d)$/;

export const LogsQuerySchema = Type.Object(
  {
    containerId: Type.Optional(Id),
    sandboxId: Type.Optional(Id),
    deploymentId: Type.Optional(Id),
    stubId: Type.Optional(Id),
    taskId: Type.Optional(Id),
    since: Type.Optional(Type.String({ maxLength: 40, description: "Lines that arrived since: a duration ago (10m, 2h, 7d) or an ISO 8601 time" })),
    after: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$", description: "Only lines after this seq (paging, resuming a follow)" })),
    limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,5}$", description: "At most this many lines (default 1000, at most 10000): the last ones, or the first ones after `after`" })),
    follow: Type.Optional(StringEnum(["true", "false"] as const)),
  },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuerySchema>;
/** Exactly one of these says whose lines to read. */
export const LOG_SELECTORS = ["containerId", "sandboxId", "deploymentId", "stubId", "taskId"] as const;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Unix ms of a `since` value (a duration ago, or an ISO time); undefined when it is neither.
 *
 * @example
 * parseSince("10m", Date.parse("2025-01-01T00:10:00Z")); // Date.parse("2025-01-01T00:00:00Z")
 */
export function parseSince(value: string, now = Date.now()): number | undefined {
  const match = SINCE.exec(value.trim());
  if (match) return now - Number(match[1]) * UNIT_MS[match[2]!]!;
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}
