/** Small helpers shared by the gateway's socket-level tests. */
import { setTimeout as sleep } from "node:timers/promises";

/** Polls `probe` until it gives something other than undefined or false; fails after `limitMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** One JSON call to a running gateway with a bearer token: `{ status, json }`. */
export async function callApi(baseUrl: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(baseUrl + path, {
    method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as any };
}
