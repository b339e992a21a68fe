/**
 * What the gateway makes of a runner's answer to an endpoint call or a web app's request (the
 * runner client's outcome, workloads/runner-client.ts): a failure as a catalogue error, or a
 * stream relayed to the caller as it comes.
 *
 * Streams are never buffered: the runner's body (undici) is piped into the reply (fastify), so a
 * caller that reads slowly stops the pipe, then the TCP window, then the runner's writes, then
 * the handler at its next `yield`. A caller that goes away destroys the reply, fastify destroys
 * the piped body, undici drops the connection to the runner, and the runner aborts ctx.signal.
 */
import type { FastifyReply } from "fastify";
import type { Dispatcher } from "undici";
import { Beta9Error, TASK_ID_HEADER } from "@beta9/protocol";
import { relayAll } from "../sandboxes/proxy.js";
import { streamHeaders, type Failure } from "../workloads/runner-client.js";

/**
 * The error a caller gets for a failed call. `call` names it for TASK_TIMEOUT; `stack`: whether
 * the caller may see the handler's stack (anonymous callers of a public workload get the message only).
 */
export function callError(failure: Failure, call: { name: string; seconds: number; taskId: string; stack: boolean }): Beta9Error {
  switch (failure.kind) {
    case "inputInvalid":
      return new Beta9Error("INPUT_INVALID", { reason: failure.message ?? "" });
    case "handlerError": {
      const message = failure.message ?? "";
      if (failure.status === 502 && failure.code === "WEBAPP_BAD_RESPONSE") return new Beta9Error("WEBAPP_BAD_RESPONSE", { reason: message });
      if (failure.status !== 500) return new Beta9Error("UPSTREAM_FAILED", { reason: `the runner answered ${failure.status}: ${message}` });
      // The stack says where it failed (the user's file and line, via the bundle's source map).
      const details = call.stack && failure.stack !== undefined ? { stack: failure.stack } : undefined;
      return new Beta9Error("HANDLER_ERROR", { reason: message }, details);
    }
    case "timedOut":
      return new Beta9Error("TASK_TIMEOUT", { name: call.name, timeout: call.seconds, id: call.taskId });
    case "lost":
      return new Beta9Error("UPSTREAM_FAILED", { reason: failure.reason });
    case "cancelled":
      return new Beta9Error("UPSTREAM_FAILED", { reason: "the call was cancelled" });
  }
}

/**
 * Relays a streamed answer: status, headers (as an exposed sandbox port's on the API's origin: no
 * cookies, a sandboxing CSP) and the body, piped with backpressure. `release` (the container slot)
 * runs once the body is done or dropped, so a stream counts as in flight for autoscaling until then.
 */
export function relayStream(reply: FastifyReply, res: Dispatcher.ResponseData, release: () => void, taskId: string): FastifyReply {
  res.body.once("close", release);
  reply.header(TASK_ID_HEADER, taskId);
  try {
    return relayAll(reply, streamHeaders(res));
  } catch (err) {
    res.body.destroy(); // drops the runner's connection (its handler sees ctx.signal abort) and frees the slot
    throw err;
  }
}
