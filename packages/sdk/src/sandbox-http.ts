/**
 * The sandbox SDK's HTTP layer: JSON calls, and streaming ones (exec output, file bodies) that
 * the general Client does not do. One undici Pool per sandbox handle, closed by close().
 */
import { Pool, type Dispatcher } from "undici";
import { API_PREFIX } from "@beta9/protocol";
import { ApiError, gatewayPoolOptions, type Client } from "./client.js";
import { toApiError } from "./client-support.js";

export interface Connection {
  gateway: string;
  token: string | undefined;
  tlsCa?: string | undefined;
}

export class SandboxHttp {
  private readonly pool: Pool;
  private readonly basePath: string;

  constructor(readonly connection: Connection) {
    const url = new URL(connection.gateway);
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.pool = new Pool(url.origin, gatewayPoolOptions(connection.tlsCa, { keepAliveTimeout: 10_000 }));
  }

  static from(client: Client): SandboxHttp {
    return new SandboxHttp({ gateway: client.gateway, token: client.token, tlsCa: client.tlsCa });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** A raw response for `path` under /api/v1; non-2xx answers throw ApiError. */
  async raw(method: Dispatcher.HttpMethod, path: string, options: { json?: unknown; body?: Dispatcher.DispatchOptions["body"]; query?: Record<string, string | undefined>; contentLength?: number } = {}): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = {};
    if (this.connection.token) headers.authorization = `Bearer ${this.connection.token}`;
    let body: Dispatcher.DispatchOptions["body"] = null;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers["content-type"] = "application/json";
    } else if (options.body !== undefined) {
      body = options.body;
      headers["content-type"] = "application/octet-stream";
      if (options.contentLength !== undefined) headers["content-length"] = String(options.contentLength);
    }
    const query = new URLSearchParams(Object.entries(options.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined)).toString();
    let res: Dispatcher.ResponseData;
    try {
      res = await this.pool.request({
        method, path: `${this.basePath}${API_PREFIX}${path}${query ? `?${query}` : ""}`, headers, body, headersTimeout: 0, bodyTimeout: 0,
      });
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ApiError(0, "UNREACHABLE", `cannot reach the gateway at ${this.connection.gateway} (${reason}); is it running (beta9 up)?`);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    throw toApiError(res.statusCode, method, path, Buffer.from(await res.body.arrayBuffer()), res.headers);
  }

  async json<T>(method: Dispatcher.HttpMethod, path: string, options: Parameters<SandboxHttp["raw"]>[2] = {}): Promise<T> {
    const res = await this.raw(method, path, options);
    const text = await res.body.text();
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }
}
