/** The task state machine's table: each runner outcome, and what it does to the task. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { INPUT_INVALID_TASK_ERROR } from "@beta9/protocol";
import { actionFor, type AttemptContext } from "./attempt-outcome.js";

const ctx: AttemptContext = { cancelled: false, closing: false, containerId: "c1", containerLive: true, timeoutSeconds: 30 };

test("a result completes; a refused input ends ERROR at once; a handler error is retried with its stack", () => {
  assert.deepEqual(actionFor({ kind: "ok", result: { n: 1 } }, ctx), { kind: "complete", result: { n: 1 } });
  assert.deepEqual(actionFor({ kind: "inputInvalid", message: "n: expected a number" }, ctx), { kind: "refused", error: `${INPUT_INVALID_TASK_ERROR}n: expected a number` });
  assert.deepEqual(actionFor({ kind: "handlerError", status: 500, message: "boom", stack: "at x" }, ctx), { kind: "retry", error: "boom", how: {}, stack: "at x" });
  assert.deepEqual(actionFor({ kind: "timedOut" }, ctx), { kind: "timedOut", error: "ran longer than its timeout of 30 s" });
});

test("a runner with no free slot: back to the queue, no retry counted", () => {
  assert.deepEqual(actionFor({ kind: "handlerError", status: 503, code: "BUSY", message: "all 1 slot(s)" }, ctx),
    { kind: "retry", error: "container c1 had no free slot", how: { uncounted: true } });
});

test("a lost exchange resumes on its container while it lives; a container that exited is retried anywhere", () => {
  assert.deepEqual(actionFor({ kind: "lost", reason: "ECONNRESET" }, ctx), { kind: "retry", error: "the exchange with the container was lost: ECONNRESET", how: { resumeOn: "c1" } });
  assert.deepEqual(actionFor({ kind: "lost", reason: "ECONNRESET" }, { ...ctx, containerLive: false }).kind === "retry" &&
    (actionFor({ kind: "lost", reason: "ECONNRESET" }, { ...ctx, containerLive: false }) as { how: object }).how, {});
  assert.deepEqual(actionFor({ kind: "lost", reason: "oom", exited: true }, ctx), { kind: "retry", error: "the container was lost (oom) during the attempt", how: {} });
  assert.deepEqual(actionFor({ kind: "lost", reason: "connect ECONNREFUSED", notSent: true }, ctx),
    { kind: "retry", error: "the container could not be reached: connect ECONNREFUSED", how: {} }, "never reached the runner: nothing to resume there");
});

test("a cancelled task and a closing gateway write nothing; an abort not by either is retried", () => {
  for (const outcome of [{ kind: "timedOut" }, { kind: "lost", reason: "x" }, { kind: "cancelled" }] as const) {
    assert.deepEqual(actionFor(outcome, { ...ctx, cancelled: true }), { kind: "leave" });
  }
  assert.deepEqual(actionFor({ kind: "cancelled" }, { ...ctx, closing: true }), { kind: "leave" });
  assert.equal(actionFor({ kind: "cancelled" }, ctx).kind, "retry");
});
