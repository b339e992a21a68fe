/**
 * Builds the gateway's HTTP application from its parts. No socket here: tests call
 * `app.inject()` on the result, and `server.ts` binds it to a port.
 */
import { sandboxHostRewriter } from "./sandboxes/ports.js";
import Fastify, { LogController, type FastifyInstance } from "fastify";
import swagger from "@fastify/swagger";
import type { Logger } from "pino";
import { Beta9Error } from "@beta9/protocol";
import { clusterRoutes } from "./api/cluster.js";
import { secretRoutes } from "./api/secrets.js";
import { Secrets } from "./secrets/secrets.js";
import { Vault } from "./secrets/vault.js";
import { randomBytes } from "node:crypto";
import { containerRoutes } from "./api/containers.js";
import { imageRoutes } from "./api/images.js";
import { invokeRoutes } from "./api/invoke.js";
import { logRoutes } from "./api/logs.js";
import { webAppRoutes } from "./api/webapp.js";
import { podRoutes } from "./api/pods.js";
import { volumeRoutes } from "./api/volumes.js";
import { machineRoutes } from "./api/machines.js";
import { taskRoutes } from "./api/tasks.js";
import { serveRoutes } from "./api/serve.js";
import { sandboxRoutes } from "./api/sandboxes.js";
import { shellRoutes } from "./api/shell.js";
import type { GatewayContext } from "./api/common.js";
import { deploymentRoutes } from "./api/deployments.js";
import { healthRoutes } from "./api/health.js";
import { dashboardRoutes } from "./api/dashboard.js";
import { objectRoutes } from "./api/objects.js";
import { stubRoutes } from "./api/stubs.js";
import { workspaceRoutes } from "./api/workspaces.js";
import { registerAuth } from "./auth/access.js";
import { closeStreamsOf } from "./api/sse.js";
import { registerErrorHandlers } from "./http-errors.js";
import { registerMetrics } from "./metrics.js";
import { routeUpgrades } from "./api/websocket.js";

/** JSON bodies above this are refused with BODY_TOO_LARGE; uploads have their own limit. */
export const JSON_BODY_LIMIT = 1024 * 1024;

export interface RouteEntry {
  method: string;
  url: string;
  access: string | undefined;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered, with its declared access: tests check each one is covered. */
    routeCatalogue: RouteEntry[];
  }
}

/** Default time a client has to send a whole request (headers and body); the handler's own time is not counted. */
export const REQUEST_TIMEOUT_MS = 600_000;

export async function buildGatewayApp(
  given: GatewayContext, logger: Logger | false = false,
  options: { requestTimeoutMs?: number; connectionsCheckingIntervalMs?: number; https?: { cert: string; key: string } } = {},
): Promise<FastifyInstance> {
  // startGateway passes secrets under the data dir's key; an app built without (tests) gets a key of its own.
  const ctx: GatewayContext = given.secrets ? given : { ...given, secrets: new Secrets(given.store.secrets, new Vault(randomBytes(32))) };
  // Typed as the default instance: route modules need not carry pino's generic logger type.
  const app: FastifyInstance = Fastify({
    ...(options.https && { https: options.https }),
    ...(logger === false ? { logger: false } : { loggerInstance: logger }),
    // Per-request log lines cost throughput; errors are logged by the error handler instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    requestIdHeader: "x-request-id",
    return503OnClosing: true,
    // A client that trickles its request (slow-loris) loses it: sockets are not held forever.
    requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    http: { connectionsCheckingInterval: options.connectionsCheckingIntervalMs ?? 30_000 },
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      // Answer only a connection that has been sent nothing yet (never inside another response), then close it for good.
      if (!socket.writable || socket.bytesWritten > 0) {
        socket.destroy();
        return;
      }
      const timedOut = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
      const body = JSON.stringify(timedOut
        ? new Beta9Error("REQUEST_TIMEOUT", { seconds: Math.round((options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS) / 1000) }).toBody()
        : new Beta9Error("BAD_REQUEST", { reason: `the request could not be parsed (${err.code ?? err.message}); send valid HTTP/1.1` }).toBody());
      socket.end(`HTTP/1.1 ${timedOut ? "408 Request Timeout" : "400 Bad Request"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      socket.destroySoon(); // the socket is half-open: ending our side alone would let the client hold it
    },
    // `<sandbox id>-<port>.<sandbox host>`: an exposed port on its own origin (sandboxes/ports.ts).
    ...(given.sandboxHost && { rewriteUrl: sandboxHostRewriter(given.sandboxHost) }),
    exposeHeadRoutes: false, // HEAD only where it means something (objects)
    ajv: {
      // Strict input: "2" is not 2, unknown properties are errors, nothing is silently dropped.
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false },
    },
  }) as unknown as FastifyInstance;

  // Node's requestTimeout covers a request until it reaches the handler; a body still trickling in
  // after that is bounded here, on the same clock.
  const bodyTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  app.addHook("onRequest", (request, reply, done) => {
    const raw = request.raw;
    // Only requests with a body to wait for get a timer (not the hot GETs).
    const length = raw.headers["content-length"];
    const hasBody = raw.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
    if (!hasBody || raw.complete) return done();
    const timer = setTimeout(() => {
      if (raw.complete || raw.socket.destroyed) return;
      if (reply.raw.headersSent) {
        raw.socket.destroy(); // answered already (an early refusal): only the trickling body remains
        return;
      }
      const body = JSON.stringify(new Beta9Error("REQUEST_TIMEOUT", { seconds: Math.round(bodyTimeoutMs / 1000) }).toBody());
      raw.socket.end(`HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      raw.socket.destroySoon();
    }, bodyTimeoutMs);
    timer.unref();
    const clear = () => clearTimeout(timer);
    raw.once("end", clear);
    raw.once("close", clear);
    done();
  });

  const routeCatalogue: RouteEntry[] = [];
  app.decorate("routeCatalogue", routeCatalogue);
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) {
      routeCatalogue.push({ method, url: route.url, access: route.config?.access });
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "beta9-ts gateway", version: ctx.version, description: "Control plane API. Every route but health and this document takes `Authorization: Bearer <token>`." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  registerErrorHandlers(app);
  // Response schemas document the API (OpenAPI); entities are built field by field by the store's
  // row mappers, so nothing extra can leak, and V8's JSON.stringify beats schema serialization.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Bodiless POSTs (stop, start) often still say application/json; treat an empty body as none.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser(["application/json", "text/plain"]); // JSON only
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) =>
    body === "" ? done(null, undefined) : parseJson(request, body as string, done),
  );
  registerAuth(app, ctx.store.tokens);
  const stopRevocations = ctx.store.tokens.onRevoked(closeStreamsOf);
  app.addHook("onClose", async () => stopRevocations());
  const metrics = registerMetrics(app, ctx);
  healthRoutes(app, ctx);
  workspaceRoutes(app, ctx);
  objectRoutes(app, ctx);
  stubRoutes(app, ctx);
  deploymentRoutes(app, ctx);
  clusterRoutes(app, ctx);
  machineRoutes(app, ctx, metrics);
  containerRoutes(app, ctx);
  logRoutes(app, ctx);
  imageRoutes(app, ctx);
  invokeRoutes(app, ctx);
  webAppRoutes(app, ctx);
  podRoutes(app, ctx);
  taskRoutes(app, ctx);
  serveRoutes(app, ctx);
  sandboxRoutes(app, ctx);
  shellRoutes(app, ctx);
  secretRoutes(app, ctx);
  volumeRoutes(app, ctx);
  dashboardRoutes(app, ctx);
  // WebSocket upgrades go through the routes above (auth included); the worker protocol's own are worker-socket.ts's (upgrades.ts decides).
  routeUpgrades(app);
  await app.ready();
  return app;
}
