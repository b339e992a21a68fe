/**
 * What an attempt's outcome (runner-client.ts) does to its task: a pure function, so the task
 * state machine reads as a table and each row is tested on its own (attempt-outcome.test.ts).
 */
import { INPUT_INVALID_TASK_ERROR } from "@beta9/protocol";
import type { Outcome } from "../workloads/runner-client.js";

export type RetryHow = { resumeOn?: string; uncounted?: boolean };

export type AttemptAction =
  | { kind: "complete"; result: unknown }
  /** Ends ERROR at once (the input was refused: another attempt would be refused too). */
  | { kind: "refused"; error: string }
  /** Ends TIMEOUT; the handler is told to stop first (/cancel). */
  | { kind: "timedOut"; error: string }
  /** Retried (or ERROR past maxRetries, unless uncounted); `stack`: the handler's, kept for whoever waits. */
  | { kind: "retry"; error: string; how: RetryHow; stack?: string }
  /** Nothing to write: the task was cancelled meanwhile, or the gateway is closing (its next start resumes it). */
  | { kind: "leave" };

export interface AttemptContext {
  /** cancel() stopped this attempt: the task is CANCELLED already. */
  cancelled: boolean;
  /** The dispatcher is closing. */
  closing: boolean;
  containerId: string;
  /** Whether the container is still in its stub's pool (a lost exchange may resume there). */
  containerLive: boolean;
  timeoutSeconds: number;
}

/**
 * @example
 * actionFor({ kind: "ok", result: 4 }, ctx); // { kind: "complete", result: 4 }
 */
export function actionFor(outcome: Outcome<unknown>, ctx: AttemptContext): AttemptAction {
  // A cancelled task is already CANCELLED: whatever ended the exchange after that changes nothing.
  if (ctx.cancelled && (outcome.kind === "timedOut" || outcome.kind === "lost" || outcome.kind === "cancelled")) return { kind: "leave" };
  switch (outcome.kind) {
    case "ok":
      return { kind: "complete", result: outcome.result };
    case "inputInvalid":
      return { kind: "refused", error: INPUT_INVALID_TASK_ERROR + (outcome.message ?? "the handler refused it") };
    case "handlerError":
      // No free slot in the runner (an attempt orphaned there by a gateway's death holds one): it never started.
      if (outcome.status === 503 && outcome.code === "BUSY") return { kind: "retry", error: `container ${ctx.containerId} had no free slot`, how: { uncounted: true } };
      return { kind: "retry", error: outcome.message ?? `the runner answered ${outcome.status}`, how: {}, ...(outcome.stack !== undefined && { stack: outcome.stack }) };
    case "timedOut":
      return { kind: "timedOut", error: `ran longer than its timeout of ${ctx.timeoutSeconds} s` };
    case "lost":
      // The container exited mid-attempt: tried again anywhere. Only the exchange was lost (a
      // reset, a tunnel's blip): the runner lets the handler run on, so the attempt goes back to
      // that container, which joins it or answers its result (once).
      if (outcome.exited || !ctx.containerLive) return { kind: "retry", error: `the container was lost (${outcome.reason}) during the attempt`, how: {} };
      // Nothing reached the runner (its process is gone, the container's exit not seen yet): nothing runs there to resume.
      if (outcome.notSent) return { kind: "retry", error: `the container could not be reached: ${outcome.reason}`, how: {} };
      return { kind: "retry", error: `the exchange with the container was lost: ${outcome.reason}`, how: { resumeOn: ctx.containerId } };
    case "cancelled":
      // Not by cancel(): the dispatcher is closing. The task stays RUNNING, this gateway's: its next
      // start (or another gateway, once this one's heartbeat stops) sends it again to the same
      // container, whose runner has let the handler run on (the store's requeue).
      if (ctx.closing) return { kind: "leave" };
      return { kind: "retry", error: "the attempt was stopped: the gateway is closing", how: {} };
  }
}
