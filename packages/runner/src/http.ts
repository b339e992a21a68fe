/**
 * Small HTTP helpers for the runner: JSON replies and a size-capped body reader.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

/** The request body passed the size cap; answered with 413. */
export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
  constructor(readonly limit: number) {
    super(`the request body is larger than ${limit} bytes`);
  }
}

/**
 * Sends `body` as JSON with `status`. A body that cannot be serialized is the caller's problem:
 * serialize first (see `toJson`) when the value comes from user code.
 *
 * @example
 * sendJson(res, 200, { status: "ok" });
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Sends the standard error envelope `{ error: { code, message, ...extra } }`.
 *
 * @example
 * sendError(res, 503, "BUSY", "all 1 invocation slots are taken");
 */
export function sendError(res: ServerResponse, status: number, code: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { code, message, ...extra } }, headers);
}

/**
 * Reads a whole body, rejecting with BodyTooLargeError as soon as it passes `limit` bytes
 * (before reading anything when Content-Length already says so).
 *
 * @example
 * const text = (await readBody(req, 32 * 1024 * 1024)).toString("utf8");
 */
export function readBody(req: NodeJS.ReadableStream & Partial<Pick<IncomingMessage, "headers">>, limit: number): Promise<Buffer> {
  const declared = Number(req.headers?.["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLargeError(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > limit) {
        req.removeListener("data", onData);
        req.pause();
        reject(new BodyTooLargeError(limit));
        return;
      }
      chunks.push(buf);
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks, size)));
    req.once("error", reject);
  });
}
