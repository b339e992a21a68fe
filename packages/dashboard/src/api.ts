/**
 * The gateway's HTTP API as the page uses it. The token lives in sessionStorage (gone when the tab
 * closes) and travels only in the Authorization header: never in a URL, so it cannot land in
 * history, logs or a Referer. Live streams (logs, task state) are read with fetch and a streaming
 * body, since EventSource cannot send headers.
 */
const TOKEN_KEY = "beta9.token";

export const getToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (key: string): void => sessionStorage.setItem(TOKEN_KEY, key);
export const clearToken = (): void => sessionStorage.removeItem(TOKEN_KEY);

export interface Whoami {
  tokenId: string;
  tokenType: string;
  workspaceId: string;
  workspaceName: string;
  canWrite: boolean;
  isAdmin: boolean;
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = getToken();
  return { ...(token && { authorization: `Bearer ${token}` }), ...extra };
}

async function failure(res: Response): Promise<ApiError> {
  let code = "HTTP_" + res.status;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message);
}

/** One JSON call under /api/v1 (or an absolute path starting with "/" outside it when `raw`). */
export async function api<T = any>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path.startsWith("/api/") || path.startsWith("/endpoint/") ? path : `/api/v1${path}`, {
    method,
    headers: headers(body !== undefined ? { "content-type": "application/json" } : {}),
    ...(body !== undefined && { body: JSON.stringify(body) }),
    ...(signal && { signal }),
    cache: "no-store",
    credentials: "omit",
  });
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const q = (params: Record<string, string | number | boolean | undefined>): string => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") s.set(k, String(v));
  const text = s.toString();
  return text ? `?${text}` : "";
};

/** Reads a streamed body line by line until it ends or `signal` aborts. */
async function lines(res: Response, onLine: (line: string) => void): Promise<void> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  }
  if (buffer) onLine(buffer);
}

/** Follows a text/event-stream route: `onEvent(name, data)` per event; resolves when the stream ends. */
export async function stream(path: string, onEvent: (event: string, data: any) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/api/v1${path}`, { headers: headers({ accept: "text/event-stream" }), signal, cache: "no-store", credentials: "omit" });
  if (!res.ok) throw await failure(res);
  let event = "message";
  let data = "";
  await lines(res, (line) => {
    if (line === "") {
      if (data) onEvent(event, JSON.parse(data));
      event = "message";
      data = "";
    } else if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  });
}

/** POSTs and reads an NDJSON answer (sandbox exec): `onItem` per line. */
export async function ndjson(path: string, body: unknown, onItem: (item: any) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/api/v1${path}`, {
    method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(body), signal, cache: "no-store", credentials: "omit",
  });
  if (!res.ok) throw await failure(res);
  await lines(res, (line) => line.trim() && onItem(JSON.parse(line)));
}
