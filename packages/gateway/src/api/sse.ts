/** Server-sent events for routes that follow something until it ends (container logs, image builds). */
import type { FastifyReply, FastifyRequest } from "fastify";

export type Emit = (event: string, data: unknown) => void;

/** Open streams and proxied sockets by the token that opened them: a revoked token's end at once. */
const openStreams = new Map<string, Set<() => void>>();

/** Ends every event stream and proxied WebSocket opened with this token (it was revoked). */
export function closeStreamsOf(tokenId: string): void {
  for (const close of [...(openStreams.get(tokenId) ?? [])]) close();
}

/**
 * Runs `close` when `tokenId` is revoked (an event stream, a proxied WebSocket: see
 * `closeStreamsOf`); returns the function that forgets it (the stream or socket ended on its own).
 */
export function closeOnRevoke(tokenId: string, close: () => void): () => void {
  const mine = openStreams.get(tokenId) ?? new Set();
  openStreams.set(tokenId, mine);
  mine.add(close);
  return () => {
    mine.delete(close);
    if (mine.size === 0 && openStreams.get(tokenId) === mine) openStreams.delete(tokenId);
  };
}

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
  const tokenId = (request as { auth?: { id: string } }).auth?.id;
  if (tokenId !== undefined) {
    const forget = closeOnRevoke(tokenId, () => {
      close();
      out.destroy();
    });
    request.raw.on("close", forget);
  }
  unsubscribe = start(emit, end);
  if (ended) unsubscribe();
}
