/**
 * Completion callbacks: when a task of a stub with `callbackUrl` ends, the gateway POSTs
 * `{ task_id, status, data, error }` there, signed so the receiver can check it came from its
 * workspace: `X-Task-Signature = hex(HMAC-SHA256(signingKey, base64(body) + ":" + X-Task-Timestamp))`.
 * Up to 3 attempts with backoff; a receiver that keeps failing is logged, never retried forever.
 * Only to public addresses unless the operator allows private ones (outbound.ts).
 */
import { createHmac } from "node:crypto";
import type { Logger } from "pino";
import { request, type Agent } from "undici";
import { pinnedDispatcher } from "./outbound.js";
import type { Task } from "@beta9/protocol";

export function signCallback(signingKey: string, body: string, timestamp: number): string {
  return createHmac("sha256", signingKey).update(`${Buffer.from(body).toString("base64")}:${timestamp}`).digest("hex");
}

export async function sendCallback(
  url: string, signingKey: string, task: Task, logger?: Logger,
  allowPrivate = process.env.BETA9_ALLOW_PRIVATE_CALLBACKS === "1",
): Promise<boolean> {
  const body = JSON.stringify({ task_id: task.id, status: task.status, data: task.result ?? null, error: task.error });
  let dispatcher: Agent;
  try {
    dispatcher = await pinnedDispatcher(url, allowPrivate);
  } catch (err) {
    logger?.warn({ url, taskId: task.id, err: (err as Error).message }, "callback not sent");
    return false;
  }
  try {
    return await post(url, body, signingKey, task, dispatcher, logger);
  } finally {
    void dispatcher.close();
  }
}

async function post(url: string, body: string, signingKey: string, task: Task, dispatcher: Agent, logger?: Logger): Promise<boolean> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      const res = await request(url, {
        method: "POST", body, headersTimeout: 30_000, bodyTimeout: 30_000, dispatcher,
        headers: {
          "content-type": "application/json", "x-task-id": task.id, "x-task-status": task.status,
          "x-task-timestamp": String(timestamp), "x-task-signature": signCallback(signingKey, body, timestamp),
        },
      });
      await res.body.dump();
      if (res.statusCode < 300) return true;
      logger?.warn({ url, taskId: task.id, status: res.statusCode, attempt }, "callback refused");
    } catch (err) {
      logger?.warn({ url, taskId: task.id, err: (err as Error).message, attempt }, "callback failed");
    }
    await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
  }
  return false;
}
