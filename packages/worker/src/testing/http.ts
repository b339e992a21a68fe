/** Small HTTP helpers for runtime tests: one GET, and "retry until the server answers". */
import { request } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import type { HostPort } from "../runtime/types.js";

export interface HttpResult {
  status: number;
  body: string;
}

export function httpGet(target: HostPort, path = "/", timeoutMs = 2_000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: target.host, port: target.port, path, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${target.host}:${target.port}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** Retries every `intervalMs` (connection refused while the server boots) until a 200 or the deadline. */
export async function waitForHttp200(target: HostPort, deadlineMs = 15_000, intervalMs = 2): Promise<HttpResult> {
  const deadline = Date.now() + deadlineMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const result = await httpGet(target, "/", Math.max(100, deadline - Date.now()));
      if (result.status === 200) return result;
      lastError = new Error(`status ${result.status}`);
    } catch (error) {
      lastError = error;
    }
    await delay(intervalMs);
  }
  throw new Error(`no HTTP 200 from ${target.host}:${target.port} within ${deadlineMs} ms: ${String(lastError)}`);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? NaN) : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2;
}
