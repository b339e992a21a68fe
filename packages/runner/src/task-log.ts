/**
 * Says which task printed each line: every invocation runs inside an AsyncLocalStorage scope
 * holding its task id, and stdout/stderr writes made in that scope (console.log included, and
 * anything the handler awaits) start each new line with the task's tag (protocol logs.ts). The
 * worker strips the tag and stores the task id with the line, so `beta9 logs --task ID` finds the
 * lines even when several tasks run at once in one container. Writes outside any task pass
 * through untouched, at the cost of one context lookup.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { TASK_LOG_TAG_END, TASK_LOG_TAG_PREFIX } from "./constants.js";

const current = new AsyncLocalStorage<string>();

/** Runs `fn` as task `taskId`: what it (and what it starts) prints is tagged with that id. */
export function runAsTask<T>(taskId: string, fn: () => T): T {
  return current.run(taskId, fn);
}

type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean;

function lastByteIsNewline(chunk: unknown): boolean | undefined {
  if (typeof chunk === "string") return chunk.length === 0 ? undefined : chunk.endsWith("\n");
  if (chunk instanceof Uint8Array) return chunk.length === 0 ? undefined : chunk[chunk.length - 1] === 10;
  return undefined;
}

/**
 * `text` with the tag at the start of every line it starts: its first character when the stream
 * stands at a line start, and after each newline that is followed by more text.
 *
 * @example
 * tagLines("a\nb\n", "t1", true); // `${tag}a\n${tag}b\n`
 */
export function tagLines(text: string, taskId: string, atLineStart: boolean): string {
  const tag = TASK_LOG_TAG_PREFIX + taskId + TASK_LOG_TAG_END;
  const parts = text.split("\n");
  let out = atLineStart ? tag + parts[0] : parts[0]!;
  for (let i = 1; i < parts.length; i++) out += i === parts.length - 1 && parts[i] === "" ? "\n" : `\n${tag}${parts[i]}`;
  return out;
}

/** Makes `stream` tag the lines written inside runAsTask; call once per stream, at start. */
export function tagTaskOutput(stream: NodeJS.WritableStream): void {
  const write = stream.write.bind(stream) as Write;
  let atLineStart = true;
  (stream as { write: Write }).write = (chunk, encoding, callback) => {
    const taskId = current.getStore();
    if (taskId === undefined || (typeof chunk !== "string" && !(chunk instanceof Uint8Array))) {
      atLineStart = lastByteIsNewline(chunk) ?? atLineStart;
      return write(chunk, encoding, callback);
    }
    const text = typeof chunk === "string"
      ? (typeof encoding === "string" && encoding !== "utf8" && encoding !== "utf-8" ? Buffer.from(chunk, encoding as BufferEncoding).toString("utf8") : chunk)
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("utf8");
    if (text.length === 0) return write(chunk, encoding, callback);
    const tagged = tagLines(text, taskId, atLineStart);
    atLineStart = text.endsWith("\n");
    // The text is utf8 now, whatever the caller's encoding; a callback given in its place stays one.
    return typeof encoding === "function" ? write(tagged, encoding) : write(tagged, "utf8", callback);
  };
}
