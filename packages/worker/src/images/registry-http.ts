/**
 * HTTP for the registry client: picks the scheme (plain http only for loopback registries),
 * answers Basic and Bearer challenges (anonymously, or with the credentials given for that one
 * registry: Basic to the registry itself, or to the token service it names), follows redirects
 * (blob GETs are often sent to object storage) without leaking credentials or tokens to another
 * host, and maps failures to errors that name the image. Credential values never appear in errors.
 */
import { lookup } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";
import { formatErrorMessage, isPrivateAddress } from "@beta9/protocol";

export type ResponseData = Dispatcher.ResponseData;
export type RegistryErrorCode = "NOT_FOUND" | "UNAUTHORIZED" | "AUTH_REQUIRED" | "AUTH_FAILED" | "DENIED" | "HTTP" | "INSECURE" | "NETWORK" | "PRIVATE_ADDRESS";

/**
 * Credentials for one registry host: "user:password" pairs go to Basic challenges and to the
 * token service of Bearer challenges; a bare token is sent as the Bearer token itself.
 * `label` names where they came from (e.g. "secrets REG_USER/REG_PASS") for error messages.
 */
export type RegistryCredentialValues = ({ username: string; password: string } | { token: string }) & { label: string };

export interface RegistryAuth {
  /** host[:port] the credentials are for; no other host (redirect targets included) gets them. */
  registry: string;
  credentials: RegistryCredentialValues;
}

export const ALLOW_PRIVATE_REGISTRIES_ENV = "BETA9_ALLOW_PRIVATE_REGISTRIES";

function privateRefusal(host: string, address: string): RegistryError {
  return new RegistryError("PRIVATE_ADDRESS", `${host} is ${address}, a loopback, link-local or private address; images are pulled from public registries only (an operator can allow private ones with ${ALLOW_PRIVATE_REGISTRIES_ENV}=1 in the worker's environment)`);
}

/**
 * The lookup every registry connection makes: the address is checked where it is resolved, and
 * the socket connects to exactly that address, so a DNS answer cannot change between the check
 * and the connect (rebinding). Redirects (blob storage) and token realms go through it too.
 */
function checkedLookup(allowPrivate: boolean): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (err: Error | null, address?: unknown, family?: number) => void) => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err);
      const refused = allowPrivate ? undefined : addresses.find((a) => isPrivateAddress(a.address));
      if (refused) return callback(privateRefusal(hostname, refused.address));
      if (options?.all) return callback(null, addresses);
      const first = addresses[0];
      return first ? callback(null, first.address, first.family) : callback(new Error(`${hostname} has no address`));
    });
  }) as unknown as LookupFunction;
}

export class RegistryError extends Error {
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

/** 127.0.0.0/8, ::1 and localhost: the only hosts we talk to over plain http. */
export function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.startsWith("[") ? hostPort.slice(1, hostPort.indexOf("]")) : hostPort.replace(/:\d+$/, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return isIP(host) === 6 && (host === "::1" || host === "0:0:0:0:0:0:0:1");
}

export function registryOrigin(registry: string): string {
  return `${isLoopbackHost(registry) ? "http" : "https"}://${registry}`;
}

function checkScheme(url: URL): void {
  if (url.protocol === "https:") return;
  if (url.protocol === "http:" && isLoopbackHost(url.host)) return;
  throw new RegistryError("INSECURE", `refusing ${url.protocol}//${url.host}: only https, or http to a loopback host, is allowed`);
}

function header(res: ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function responseHeader(res: ResponseData, name: string): string | undefined {
  return header(res, name);
}

/** `Bearer realm="...",service="...",scope="..."` → its parameters. */
function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const scheme = value.trim().split(/\s+/)[0]!.toLowerCase();
  const params: Record<string, string> = {};
  for (const m of value.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!;
  return { scheme, params };
}

export interface SendOptions {
  method: "GET" | "HEAD" | "POST" | "PUT" | "PATCH";
  /** A path below the origin ("/v2/...") or an absolute URL (upload locations). */
  url: string;
  /** e.g. "repository:library/python:pull" — what token to ask for if challenged. */
  scope: string;
  headers?: Record<string, string>;
  /** A factory, so that a request challenged for auth can be sent again with a fresh body. */
  body?: () => Buffer | Readable;
  /** Statuses the caller handles itself; anything else becomes a RegistryError. */
  expect: number[];
  /** Names the thing being fetched in error messages, e.g. "127.0.0.1:5000/app:v1". */
  what: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class RegistryTransport {
  private readonly agent: Agent;
  private readonly tokens = new Map<string, string>();
  /** Registries that answered a Basic challenge: later requests send the credentials at once. */
  private readonly basic = new Set<string>();

  /** `allowPrivate`: the operator lets pulls reach loopback, link-local and private addresses. */
  constructor(private readonly allowPrivate = process.env[ALLOW_PRIVATE_REGISTRIES_ENV] === "1", private readonly auth?: RegistryAuth) {
    this.agent = new Agent({ connections: 16, headersTimeout: 60_000, bodyTimeout: 120_000, connect: { lookup: checkedLookup(allowPrivate) } });
  }

  /** An address literal is never looked up, so it is checked here. */
  private checkLiteral(url: URL): void {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (!this.allowPrivate && isIP(host) !== 0 && isPrivateAddress(host)) throw privateRefusal(url.host, host);
  }

  async send(registry: string, options: SendOptions): Promise<ResponseData> {
    let url = new URL(options.url, registryOrigin(registry));
    const tokenKey = `${registry} ${options.scope}`;
    let authorized = false;
    for (let hop = 0; hop < 8; hop++) {
      checkScheme(url);
      this.checkLiteral(url);
      const sameHost = url.host === registry;
      const res = await this.raw(url, options, sameHost ? this.authorization(registry, tokenKey) : undefined);
      const location = header(res, "location");
      if (REDIRECTS.has(res.statusCode) && location && (options.method === "GET" || options.method === "HEAD")) {
        await res.body.dump();
        url = new URL(location, url);
        continue;
      }
      if (res.statusCode === 401 && sameHost && !authorized) {
        const challenge = header(res, "www-authenticate") ?? "";
        await res.body.dump();
        await this.answerChallenge(registry, tokenKey, challenge, options);
        authorized = true;
        continue;
      }
      if (res.statusCode === 401 && sameHost) {
        // Authorized as well as we could, and still refused.
        await res.body.dump();
        throw this.authError(registry, options);
      }
      if (options.expect.includes(res.statusCode)) return res;
      throw await this.toError(res, options);
    }
    throw new RegistryError("HTTP", `${options.what}: too many redirects`);
  }

  /** Credentials for `registry`, if any were given for exactly that host. */
  private credentialsFor(registry: string): RegistryCredentialValues | undefined {
    return this.auth?.registry === registry ? this.auth.credentials : undefined;
  }

  private authorization(registry: string, tokenKey: string): string | undefined {
    const token = this.tokens.get(tokenKey);
    if (token) return `Bearer ${token}`;
    const creds = this.credentialsFor(registry);
    if (creds && "username" in creds && this.basic.has(registry)) return basicHeader(creds);
    return undefined;
  }

  /** Refused after authorizing: the credentials are wrong (or lack access), or none were given. */
  private authError(registry: string, options: SendOptions): RegistryError {
    const creds = this.credentialsFor(registry);
    if (creds) return new RegistryError("AUTH_FAILED", `${formatErrorMessage("REGISTRY_AUTH_FAILED", { registry, secrets: creds.label })} (pulling ${options.what})`, 401);
    return new RegistryError("AUTH_REQUIRED", formatErrorMessage("REGISTRY_AUTH_REQUIRED", { registry, image: options.what }), 401);
  }

  private async answerChallenge(registry: string, tokenKey: string, challenge: string, options: SendOptions): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    const creds = this.credentialsFor(registry);
    if (scheme === "basic") {
      if (!creds) throw this.authError(registry, options);
      if (!("username" in creds)) {
        throw new RegistryError("AUTH_FAILED", `${registry} asks for a user name and password (Basic), but ${creds.label} holds a token: store "user:password" in the secret, or use username and password secrets`, 401);
      }
      this.basic.add(registry);
      return;
    }
    if (scheme === "bearer" && params.realm && creds && "token" in creds) {
      this.tokens.set(tokenKey, creds.token);
      return;
    }
    this.tokens.set(tokenKey, await this.fetchToken(registry, challenge, options));
  }

  private async raw(url: URL, options: SendOptions, authorization: string | undefined): Promise<ResponseData> {
    const headers: Record<string, string> = { "user-agent": "beta9-ts", ...options.headers };
    if (authorization) headers.authorization = authorization;
    try {
      return await request(url, { method: options.method, headers, body: options.body?.() ?? null, dispatcher: this.agent });
    } catch (err) {
      const refused = findCause(err, (e): e is RegistryError => e instanceof RegistryError);
      if (refused) throw new RegistryError(refused.code, `${options.what}: ${refused.message}`);
      throw new RegistryError("NETWORK", `${options.what}: cannot reach ${url.host}: ${(err as Error).message}`);
    }
  }

  /**
   * A token from the realm the registry named (Docker Hub, GHCR, ECR, ... all do this): anonymous,
   * or with the registry's credentials as Basic auth (the realm is the registry's own choice).
   */
  private async fetchToken(registry: string, challenge: string, options: SendOptions): Promise<string> {
    const { scheme, params } = parseChallenge(challenge);
    const creds = this.credentialsFor(registry);
    if (scheme !== "bearer" || !params.realm) {
      throw new RegistryError("UNAUTHORIZED", `${options.what}: the registry asks for ${scheme || "no known"} authentication, which is not supported (Basic and Bearer are)`, 401);
    }
    const realm = new URL(params.realm);
    checkScheme(realm);
    this.checkLiteral(realm);
    if (params.service) realm.searchParams.set("service", params.service);
    realm.searchParams.set("scope", params.scope ?? options.scope);
    const headers: Record<string, string> = { "user-agent": "beta9-ts" };
    if (creds && "username" in creds) {
      realm.searchParams.set("account", creds.username);
      headers.authorization = basicHeader(creds);
    }
    const res = await request(realm, { method: "GET", dispatcher: this.agent, headers }).catch((err: Error) => {
      const refused = findCause(err, (e): e is RegistryError => e instanceof RegistryError);
      if (refused) throw new RegistryError(refused.code, `${options.what}: the token service: ${refused.message}`);
      throw new RegistryError("NETWORK", `${options.what}: cannot reach the token service ${realm.host}: ${err.message}`);
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      if (res.statusCode === 401 || res.statusCode === 403) throw this.authError(registry, options);
      throw new RegistryError("UNAUTHORIZED", `${options.what}: the token service ${realm.host} answered ${res.statusCode}${creds ? "" : " for anonymous access"}`, res.statusCode);
    }
    const body = (await res.body.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError("UNAUTHORIZED", `${options.what}: the token service returned no token`);
    return token;
  }

  private async toError(res: ResponseData, options: SendOptions): Promise<RegistryError> {
    let detail = "";
    try {
      const text = (await res.body.text()).slice(0, 2048);
      const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      detail = parsed.errors?.map((e) => `${e.code ?? ""} ${e.message ?? ""}`.trim()).join("; ") ?? text;
    } catch {
      // a non-JSON error body: the status alone has to do
    }
    const suffix = detail ? ` (${detail})` : "";
    if (res.statusCode === 404) return new RegistryError("NOT_FOUND", `${options.what}: not found${suffix}`, 404);
    if (res.statusCode === 401) return new RegistryError("UNAUTHORIZED", `${options.what}: unauthorized${suffix}`, 401);
    if (res.statusCode === 403) return new RegistryError("DENIED", `${options.what}: access denied${suffix}`, 403);
    return new RegistryError("HTTP", `${options.what}: ${options.method} answered ${res.statusCode}${suffix}`, res.statusCode);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function basicHeader(creds: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
}

function findCause<T>(err: unknown, match: (e: unknown) => e is T): T | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) if (match(e)) return e;
  return undefined;
}
