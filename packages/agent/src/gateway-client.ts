/** The agent's two HTTP calls to the gateway, authenticated by the machine token. */
import { Agent, request, type Dispatcher } from "undici";
import {
  MACHINE_KEEPALIVE_PATH, MACHINE_REGISTER_PATH, parseErrorBody, pinnedTlsOptions, type MachineKeepaliveBody, type MachineKeepaliveResponse, type MachineRegisterBody,
  type MachineRegisterResponse,
} from "@beta9/protocol";

/** An answer from the gateway that is not a success; `status` 0 means it could not be reached. */
export class GatewayCallError extends Error {
  override name = "GatewayCallError";
  constructor(message: string, readonly status: number, readonly code?: string) {
    super(message);
  }

  /** The gateway forgot or expired this machine: registering again fixes it. */
  get needsRegister(): boolean {
    return this.code === "MACHINE_NOT_REGISTERED" || this.status === 409;
  }

  get unreachable(): boolean {
    return this.status === 0;
  }
}

export class GatewayClient {
  private readonly dispatcher: Dispatcher | undefined;

  private readonly urls: string[];
  private index = 0;

  /**
   * `baseUrl`: one gateway or several on one database; a call that reaches none moves the next call
   * to the next one (the caller retries with its backoff). `tlsCa`: the gateways' pinned certificate
   * (PEM), the only one trusted.
   */
  constructor(baseUrl: string | readonly string[], private readonly token: string, private readonly timeoutMs = 10_000, tlsCa?: string) {
    this.urls = typeof baseUrl === "string" ? [baseUrl] : [...baseUrl];
    if (this.urls.length === 0) throw new Error("GatewayClient needs a gateway URL");
    this.dispatcher = tlsCa ? new Agent({ connect: pinnedTlsOptions(tlsCa) }) : undefined;
  }

  /** The gateway the next call goes to. */
  get baseUrl(): string {
    return this.urls[this.index]!;
  }

  /** `signal` aborts a call in flight (shutdown must not wait out the request timeout). */
  register(body: MachineRegisterBody, signal?: AbortSignal): Promise<MachineRegisterResponse> {
    return this.post(MACHINE_REGISTER_PATH, body, signal);
  }

  keepalive(body: MachineKeepaliveBody, signal?: AbortSignal): Promise<MachineKeepaliveResponse> {
    return this.post(MACHINE_KEEPALIVE_PATH, body, signal);
  }

  private async post<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    let res;
    try {
      res = await request(new URL(path, this.baseUrl), {
        method: "POST",
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        ...(signal && { signal }),
        ...(this.dispatcher && { dispatcher: this.dispatcher }),
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const failed = this.baseUrl;
      if (!signal?.aborted) this.index = (this.index + 1) % this.urls.length;
      throw new GatewayCallError(`gateway unreachable at ${failed}: ${e.code ?? e.message}`, 0);
    }
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) return JSON.parse(text) as T;
    const error = parseErrorBody(res.statusCode, text);
    const code = error.structured ? error.code : undefined;
    throw new GatewayCallError(`${path}: ${res.statusCode} ${code ?? ""} ${error.message.slice(0, 300)}`.replace(/\s+/g, " ").trim(), res.statusCode, code);
  }
}
