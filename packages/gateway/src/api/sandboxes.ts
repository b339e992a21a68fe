/**
 * Sandboxes: create, list, get, terminate, TTL, exposed ports; and the operations proxied to the
 * sandbox's daemon (exec streams, runCode, processes, files). Every route checks the token and
 * the workspace before anything reaches a sandbox; another workspace's sandbox is a 404.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Readable } from "node:stream";
import type { Static } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, egressPolicy, EgressRuleError, parseCpu, parseMemory, volumeMountPath } from "@beta9/protocol";
import { SandboxManager } from "../sandboxes/manager.js";
import { forward, relay } from "../sandboxes/proxy.js";
import { exposedPortRoutes, exposedUrl } from "../sandboxes/ports.js";
import {
  CreateSandboxBodySchema, ExecBodySchema, ExposeBodySchema, KillBodySchema, PathQuerySchema, PidParamsSchema, RemoveQuerySchema,
  RunCodeBodySchema, SandboxGetQuerySchema, SandboxListQuerySchema, SandboxParamsSchema, SandboxSchema, TtlBodySchema,
  WriteQuerySchema, type CreateSandboxBody, type RunCodeBody,
} from "../sandboxes/schemas.js";
import { transpileTypeScript } from "../sandboxes/typescript.js";
import type { SandboxConfig, SandboxRecord } from "../store/types.js";
import { resourceField, found, Items, responses, toPage, type GatewayContext } from "./common.js";

type Params = Static<typeof SandboxParamsSchema>;
const S = `${API_PREFIX}/sandbox`;
const tags = ["sandbox"];

/** The gateway's own base URL as the client reached it (for exposed-port URLs). */
function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.headers.host ?? "127.0.0.1"}`;
}

function config(body: CreateSandboxBody): SandboxConfig {
  return {
    imageId: body.imageId ?? null,
    cpuMillicores: body.cpu === undefined ? 1000 : resourceField("cpu", () => parseCpu(body.cpu)),
    memoryMiB: body.memory === undefined ? 1024 : resourceField("memory", () => parseMemory(body.memory)),
    env: body.env ?? {},
    ...(body.secrets?.length && { secrets: [...new Set(body.secrets)] }),
    ttlSeconds: body.keepWarmSeconds ?? 600,
    pool: body.pool ?? null,
    exposed: [],
    ...(body.volumes?.length && { volumes: body.volumes.map((v) => ({ name: v.name, mountPath: mountPath(v.mountPath) })) }),
    ...egressField(body),
  };
}

function egressField(body: CreateSandboxBody): Pick<SandboxConfig, "egress"> {
  try {
    const egress = egressPolicy(body.blockNetwork, body.allowList);
    return egress ? { egress } : {};
  } catch (err) {
    if (err instanceof EgressRuleError) throw new Beta9Error("INVALID_CONFIG", { field: "allowList", reason: err.message });
    throw err;
  }
}

/** Where a volume may go: an absolute path that hides nothing the sandbox needs to work. */
function mountPath(raw: string): string {
  const path = volumeMountPath(raw);
  if (!path) throw new Beta9Error("INVALID_CONFIG", { field: "volumes.mountPath", reason: `${raw} is reserved; mount volumes elsewhere, e.g. /workspace/data or /mnt/models` });
  return path;
}

export function sandboxRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { store, scheduler } = ctx;
  const sandboxes = ctx.sandboxes ?? new SandboxManager({ store, scheduler, ...(ctx.quotas && { quotas: ctx.quotas }) });

  const toSandbox = (r: SandboxRecord, base: string) => ({
    id: r.id, workspaceId: r.workspaceId, containerId: r.containerId, state: r.state, reason: r.reason, imageId: r.config.imageId,
    cpuMillicores: r.config.cpuMillicores, memoryMiB: r.config.memoryMiB, ttlSeconds: r.config.ttlSeconds, expiresAt: r.expiresAt,
    workerId: sandboxes.container(r)?.workerId ?? null,
    exposed: r.config.exposed.map((e) => ({ ...e, url: exposedUrl(base, r.id, e.port, ctx.sandboxHost) })),
    volumes: r.config.volumes ?? [],
    blockNetwork: r.config.egress?.block === true, allowList: r.config.egress?.allow ?? null,
    createdAt: r.createdAt, endedAt: r.endedAt,
  });
  const load = async (request: FastifyRequest<{ Params: Params }>) =>
    found(await store.sandboxes.get(request.auth.workspaceId, request.params.id), "sandbox", request.params.id);
  /** The daemon URL for `path` of a sandbox of the caller's workspace (waits while it starts). */
  const daemon = async (request: FastifyRequest<{ Params: Params }>, path: string, query?: Record<string, string | undefined>) => {
    const record = await load(request);
    const origin = await sandboxes.origin(record);
    const qs = new URLSearchParams(Object.entries(query ?? {}).filter((e): e is [string, string] => e[1] !== undefined)).toString();
    return { url: `${origin}${path}${qs ? `?${qs}` : ""}`, secret: record.config.secret };
  };

  app.post<{ Body: CreateSandboxBody }>(S, {
    config: { access: "write" },
    schema: { tags, summary: "Create a sandbox (answers at once, PENDING; GET ?wait=ready waits until it runs)", body: CreateSandboxBodySchema, response: responses({ 201: SandboxSchema }) },
  }, async (request, reply) => {
    if (request.body === undefined) throw new Beta9Error("VALIDATION_FAILED", { location: "body", path: "", reason: "is required; send {} for the defaults" });
    const c = config(request.body);
    if (c.imageId !== null) {
      const image = found(await store.images.get(request.auth.workspaceId, c.imageId), "image", c.imageId);
      if (image.status !== "ready") throw new Beta9Error("IMAGE_NOT_READY", { id: image.id, status: image.status });
    }
    return reply.code(201).send(toSandbox(await sandboxes.create(request.auth.workspaceId, c), baseUrl(request)));
  });

  app.get<{ Querystring: Static<typeof SandboxListQuerySchema> }>(S, {
    config: { access: "read" },
    schema: { tags, summary: "The workspace's sandboxes, newest first", querystring: SandboxListQuerySchema, response: responses({ 200: Items(SandboxSchema) }) },
  }, async (request) => {
    const items = await store.sandboxes.list(request.auth.workspaceId, { ...toPage(request.query), active: request.query.active === "true" });
    return { items: items.map((r) => toSandbox(r, baseUrl(request))) };
  });

  app.get<{ Params: Params; Querystring: Static<typeof SandboxGetQuerySchema> }>(`${S}/:id`, {
    config: { access: "read" },
    schema: { tags, summary: "A sandbox; with wait=ready, answers once it runs (or 409 if it ended)", params: SandboxParamsSchema, querystring: SandboxGetQuerySchema, response: responses({ 200: SandboxSchema }) },
  }, async (request) => {
    let record = await load(request);
    if (request.query.wait === "ready") {
      await sandboxes.origin(record);
      record = await load(request);
    }
    return toSandbox(record, baseUrl(request));
  });

  app.post<{ Params: Params }>(`${S}/:id/terminate`, {
    config: { access: "write" },
    schema: { tags, summary: "End the sandbox: its container and everything in it", params: SandboxParamsSchema, response: responses({ 200: SandboxSchema }) },
  }, async (request) => {
    await sandboxes.terminate(await load(request));
    return toSandbox(await load(request), baseUrl(request));
  });

  app.post<{ Params: Params; Body: Static<typeof TtlBodySchema> }>(`${S}/:id/ttl`, {
    config: { access: "write" },
    schema: { tags, summary: "A new lifetime from now, in seconds (-1: until terminated)", params: SandboxParamsSchema, body: TtlBodySchema, response: responses({ 200: SandboxSchema }) },
  }, async (request) => {
    await sandboxes.updateTtl(await load(request), request.body.ttlSeconds);
    return toSandbox(await load(request), baseUrl(request));
  });

  app.post<{ Params: Params; Body: Static<typeof ExposeBodySchema> }>(`${S}/:id/port`, {
    config: { access: "write" },
    schema: { tags, summary: "Expose a port of the sandbox through the gateway (public: no token needed)", params: SandboxParamsSchema, body: ExposeBodySchema },
  }, async (request) => {
    const record = await load(request);
    if (record.state === "TERMINATED") throw new Beta9Error("SANDBOX_NOT_RUNNING", { id: record.id, state: record.state, reason: record.reason ?? "ended" });
    const { port } = request.body;
    const exposed = [...record.config.exposed.filter((e) => e.port !== port), { port, public: request.body.public ?? false }].sort((a, b) => a.port - b.port);
    await store.sandboxes.setConfig(record.id, { ...record.config, exposed });
    return { port, public: request.body.public ?? false, url: exposedUrl(baseUrl(request), record.id, port, ctx.sandboxHost) };
  });

  app.post<{ Params: Params; Body: Static<typeof ExecBodySchema> }>(`${S}/:id/exec`, {
    config: { access: "write" },
    schema: { tags, summary: "Run a command; answers an NDJSON stream: start {pid}, stdout/stderr chunks, exit {exitCode}", params: SandboxParamsSchema, body: ExecBodySchema },
  }, async (request, reply) => {
    const url = await daemon(request, "/exec");
    const res = await forward(url, { method: "POST", body: JSON.stringify(request.body), headers: { "content-type": "application/json" }, unbounded: true });
    // A client that goes away stops reading; the process itself goes on (kill it by pid).
    reply.raw.once("close", () => res.body.destroy());
    return relay(reply, res);
  });

  app.post<{ Params: Params; Body: RunCodeBody }>(`${S}/:id/run-code`, {
    config: { access: "write" },
    schema: { tags, summary: "Run code (python, javascript or typescript) to completion: {result, stdout, stderr, exitCode}", params: SandboxParamsSchema, body: RunCodeBodySchema },
  }, async (request, reply) => {
    const { language = "python", ...rest } = request.body;
    const body = language === "typescript" ? { ...rest, language: "javascript", code: await transpileTypeScript(rest.code) } : { ...rest, language };
    const url = await daemon(request, "/run-code");
    // The answer comes when the code ends; a client that leaves first ends it (the daemon kills it).
    const gone = new AbortController();
    reply.raw.once("close", () => { if (!reply.raw.writableFinished) gone.abort(); });
    return relay(reply, await forward(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, unbounded: true, signal: gone.signal }));
  });

  app.get<{ Params: Params }>(`${S}/:id/process`, {
    config: { access: "read" },
    schema: { tags, summary: "Processes started by exec (running and recently ended)", params: SandboxParamsSchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, "/process"), { method: "GET" })));

  app.post<{ Params: Static<typeof PidParamsSchema>; Body: Static<typeof KillBodySchema> }>(`${S}/:id/process/:pid/kill`, {
    config: { access: "write" },
    schema: { tags, summary: "Signal one exec'd process and its children (default SIGKILL); the sandbox goes on", params: PidParamsSchema, body: KillBodySchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, `/process/${request.params.pid}/kill`), {
    method: "POST", body: JSON.stringify(request.body ?? {}), headers: { "content-type": "application/json" },
  })));

  // Files: raw bytes in and out, streamed; only these routes take application/octet-stream.
  app.register(async (scope) => {
    scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));

    scope.get<{ Params: Params; Querystring: Static<typeof PathQuerySchema> }>(`${S}/:id/fs/file`, {
      config: { access: "read" },
      schema: { tags, summary: "Download a file's bytes", params: SandboxParamsSchema, querystring: PathQuerySchema },
    }, async (request, reply) => relay(reply, await forward(await daemon(request, "/fs/file", { path: request.query.path }), { method: "GET" })));

    scope.put<{ Params: Params; Querystring: Static<typeof WriteQuerySchema> }>(`${S}/:id/fs/file`, {
      config: { access: "write" },
      schema: { tags, summary: "Upload a file (application/octet-stream; replaced atomically; parents created)", params: SandboxParamsSchema, querystring: WriteQuerySchema },
    }, async (request, reply) => {
      const record = await load(request);
      if (!request.headers["content-type"]?.startsWith("application/octet-stream")) {
        throw new Beta9Error("UNSUPPORTED_MEDIA_TYPE", { contentType: String(request.headers["content-type"] ?? "(none)"), expected: "application/octet-stream" });
      }
      const url = { url: `${await sandboxes.origin(record)}/fs/file?${new URLSearchParams({ path: request.query.path, ...(request.query.mode !== undefined && { mode: request.query.mode }) })}`, secret: record.config.secret };
      const length = request.headers["content-length"];
      const headers: Record<string, string> = { "content-type": "application/octet-stream", ...(length !== undefined && { "content-length": length }) };
      return relay(reply, await forward(url, { method: "PUT", body: request.body as Readable, headers, unbounded: true }));
    });
  });

  app.get<{ Params: Params; Querystring: Static<typeof PathQuerySchema> }>(`${S}/:id/fs/list`, {
    config: { access: "read" },
    schema: { tags, summary: "List a directory", params: SandboxParamsSchema, querystring: PathQuerySchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, "/fs/list", { path: request.query.path }), { method: "GET" })));

  app.get<{ Params: Params; Querystring: Static<typeof PathQuerySchema> }>(`${S}/:id/fs/stat`, {
    config: { access: "read" },
    schema: { tags, summary: "Stat a path (a symlink is described, not followed)", params: SandboxParamsSchema, querystring: PathQuerySchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, "/fs/stat", { path: request.query.path }), { method: "GET" })));

  app.post<{ Params: Params; Querystring: Static<typeof PathQuerySchema> }>(`${S}/:id/fs/mkdir`, {
    config: { access: "write" },
    schema: { tags, summary: "Create a directory and its parents", params: SandboxParamsSchema, querystring: PathQuerySchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, "/fs/mkdir", { path: request.query.path }), { method: "POST" })));

  app.delete<{ Params: Params; Querystring: Static<typeof RemoveQuerySchema> }>(`${S}/:id/fs`, {
    config: { access: "write" },
    schema: { tags, summary: "Remove a file, symlink or directory (recursive=true for one that is not empty)", params: SandboxParamsSchema, querystring: RemoveQuerySchema },
  }, async (request, reply) => relay(reply, await forward(await daemon(request, "/fs", { path: request.query.path, recursive: request.query.recursive }), { method: "DELETE" })));

  exposedPortRoutes(app, { store, sandboxes, ...(ctx.quotas && { quotas: ctx.quotas }) });
}

