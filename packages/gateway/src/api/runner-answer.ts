/**
 * What the gateway makes of a runner's answer to an endpoint call or a web app's request: a
 * failure as a catalogue error, or a stream (runner-protocol.ts, "Streaming") relayed to the
 * caller as it comes.
 *
 * Streams are never buffered: the runner's body (undici) is piped into the reply (fastify), so a
 * caller that reads slowly stops the pipe, then the TCP window, then the runner's writes, then
 * the handler at its next `yield`. A caller that goes away destroys the reply, fastify destroys
 * the piped body, undici drops the connection to the runner, and the runner aborts ctx.signal.
 */
import type { FastifyReply } from "fastify";
import type { Dispatcher } from "undici";
import { Beta9Error, STREAM_HEADER, TASK_ID_HEADER } from "@beta9/protocol";
import { relayAll } from "../sandboxes/proxy.js";

interface RunnerError {
  error?: { code?: string; message?: string; stack?: unknown };
}

/** The most of a runner's whole (not streamed) answer the gateway holds: a result, or an error. */
export const MAX_ANSWER_BYTES = 32 * 1024 * 1024;

/**
 * A runner's whole answer as text, at most `limit` bytes: the runner is the tenant's code, and a
 * body without end would otherwise be held whole. Undici's own text() when the length is declared
 * and within it (the runners declare it), else read chunk by chunk and cut off.
 */
export async function answerText(res: Dispatcher.ResponseData, limit = MAX_ANSWER_BYTES, options: { truncate?: boolean } = {}): Promise<string> {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared <= limit) return res.body.text();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      // An error's first bytes say enough; a result cut short would be wrong.
      if (options.truncate) return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
      const mib = limit / 1024 / 1024;
      throw new Beta9Error("UPSTREAM_FAILED", { reason: `its answer is larger than ${mib} MiB; return less, or stream it (return an async iterable or a ReadableStream)` });
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** A handler's stack (both runners send it) as far as a caller gets it: bounded, text only. */
const MAX_STACK_CHARS = 16 * 1024;

/**
 * The error for a runner's non-200, non-stream answer (`text`: its body). `stack`: whether the
 * caller may see the handler's stack (anonymous callers of a public workload get the message only).
 */
export function runnerFailure(statusCode: number, text: string, options: { stack: boolean }): Beta9Error {
  const body = (() => {
    try {
      return JSON.parse(text) as RunnerError;
    } catch {
      return {} as RunnerError;
    }
  })();
  const message = body.error?.message ?? text.slice(0, 500);
  if (statusCode === 422) return new Beta9Error("INPUT_INVALID", { reason: message });
  if (statusCode === 502 && body.error?.code === "WEBAPP_BAD_RESPONSE") return new Beta9Error("WEBAPP_BAD_RESPONSE", { reason: message });
  if (statusCode === 500) {
    // The stack says where it failed (the user's file and line, via the bundle's source map).
    const stack = body.error?.stack;
    const details = options.stack && typeof stack === "string" ? { stack: stack.slice(0, MAX_STACK_CHARS) } : undefined;
    return new Beta9Error("HANDLER_ERROR", { reason: message }, details);
  }
  return new Beta9Error("UPSTREAM_FAILED", { reason: `the runner answered ${statusCode}: ${message}` });
}

/** Whether the runner's answer is a stream (to relay) rather than JSON. */
export const isStream = (res: Dispatcher.ResponseData): boolean => res.headers[STREAM_HEADER] !== undefined;

/**
 * Relays a streamed answer: status, headers (as an exposed sandbox port's on the API's origin: no
 * cookies, a sandboxing CSP) and the body, piped with backpressure. `release` (the container slot)
 * runs once the body is done or dropped, so a stream counts as in flight for autoscaling until then.
 */
export function relayStream(reply: FastifyReply, res: Dispatcher.ResponseData, release: () => void, taskId: string): FastifyReply {
  res.body.once("close", release);
  delete res.headers[STREAM_HEADER];
  reply.header(TASK_ID_HEADER, taskId);
  try {
    return relayAll(reply, res);
  } catch (err) {
    res.body.destroy(); // drops the runner's connection (its handler sees ctx.signal abort) and frees the slot
    throw err;
  }
}

/** undici's own timeouts: headers (time to first byte) and body (longest gap between chunks). */
export function callFailure(err: unknown, timeout: { name: string; seconds: number; taskId: string }): Beta9Error {
  const code = (err as { code?: string }).code;
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return new Beta9Error("TASK_TIMEOUT", { name: timeout.name, timeout: timeout.seconds, id: timeout.taskId });
  }
  return new Beta9Error("UPSTREAM_FAILED", { reason: (err as Error).message });
}
