/** Server-sent events for routes that follow something until it ends (container logs, image builds). */
import type { FastifyReply, FastifyRequest } from "fastify";

export type Emit = (event: string, data: unknown) => void;

/**
 * Takes over the reply as a text/event-stream. `start` subscribes and replays history through
 * `emit`, calls `end(final)` when the followed thing is over, and returns its unsubscribe. A
 * comment every 15 s keeps proxies from closing an idle stream.
 */
export function streamEvents(
  request: FastifyRequest,
  reply: FastifyReply,
  start: (emit: Emit, end: (final: unknown) => void) => () => void,
): void {
  reply.hijack();
  const out = reply.raw;
  out.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
  let open = true;
  const emit: Emit = (event, data) => {
    if (open) out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const heartbeat = setInterval(() => open && out.write(": keepalive\n\n"), 15_000);
  let unsubscribe: (() => void) | undefined;
  let ended = false;
  const close = () => {
    open = false;
    clearInterval(heartbeat);
    unsubscribe?.();
  };
  const end = (final: unknown) => {
    if (ended) return;
    ended = true;
    emit("end", final);
    close();
    out.end();
  };
  request.raw.on("close", close);
  unsubscribe = start(emit, end);
  if (ended) unsubscribe();
}
