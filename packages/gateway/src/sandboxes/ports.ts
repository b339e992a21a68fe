/**
 * Ports a sandbox exposes, served through the gateway at /sandbox/:id/port/:port/… with any
 * method. Authorised like every route (a read token of the sandbox's workspace), unless the port
 * was exposed as public. An unknown sandbox or a port it does not expose is a 404 that says
 * nothing more. WebSocket upgrades pass too (through the daemon, which splices them to the port;
 * messages bounded and sockets counted per workspace as for workloads: api/websocket.ts).
 *
 * Each exposed port also has an origin of its own, `<sandbox id>-<port>.<sandbox host>` (the
 * operator points a wildcard DNS name at the gateway and sets BETA9_SANDBOX_HOST): there the
 * port's cookies and service workers are its own, so they pass. On the API's origin (the path
 * form) they are stripped and the page runs sandboxed (CSP), so no port can act as the API's origin.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { Beta9Error, DAEMON_PROXY_PATH, PROXY_PATH_HEADER, PROXY_PORT_HEADER } from "@beta9/protocol";
import { bearerKey } from "../auth/access.js";
import type { Store } from "../store/types.js";
import type { SandboxManager } from "./manager.js";
import { forward, forwardedHeaders, relayAll } from "./proxy.js";
import { proxyWebSocket, upgradeOf } from "../api/websocket.js";
import { holdSocket, quotasOf, refuseOverCount } from "../api/websocket-routes.js";
import type { WorkspaceQuotas } from "../quotas.js";

/**
 * The part of the raw request URL after /sandbox/:id/port/:port, still percent-encoded as the caller
 * sent it (query included): the server in the sandbox sees the path it was asked for.
 */
export function portPath(rawUrl: string): string {
  const match = /^\/sandbox\/[^/?]+\/port\/[^/?]+(\/[^?]*)?(\?.*)?$/.exec(rawUrl);
  return `${match?.[1] ?? "/"}${match?.[2] ?? ""}`;
}

/** The port's URL: on its own origin when the gateway has a sandbox host, else under the API's. */
export function exposedUrl(base: string, sandboxId: string, port: number, sandboxHost?: string): string {
  if (sandboxHost) return `${new URL(base).protocol}//${sandboxId}-${port}.${sandboxHost}/`;
  return `${base}/sandbox/${sandboxId}/port/${port}/`;
}

const SANDBOX_LABEL = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-([0-9]{1,5})$/;
const HOST_ROUTED = Symbol("beta9.sandboxHostRouted");

/** "Name:port" or "[v6]:port" → the lower-case name alone. */
const hostname = (host: string): string => host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");

/**
 * Fastify's rewriteUrl for a gateway with a sandbox host: a request whose Host is exactly
 * `<sandbox id>-<port>.<sandboxHost>` (ports aside) is that port's, whatever its path (the API is
 * not served there), on the port's own origin. Any other Host is the API's.
 */
export function sandboxHostRewriter(sandboxHost: string): (req: IncomingMessage) => string {
  const suffix = `.${hostname(sandboxHost)}`;
  return (req) => {
    const url = req.url ?? "/";
    const host = hostname(req.headers.host ?? "");
    if (!host.endsWith(suffix)) return url;
    const match = SANDBOX_LABEL.exec(host.slice(0, -suffix.length));
    if (!match) return url;
    (req as IncomingMessage & { [HOST_ROUTED]?: boolean })[HOST_ROUTED] = true;
    return `/sandbox/${match[1]}/port/${match[2]}${url.startsWith("/") ? url : `/${url}`}`;
  };
}

const hostRouted = (request: FastifyRequest): boolean => (request.raw as IncomingMessage & { [HOST_ROUTED]?: boolean })[HOST_ROUTED] === true;

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
type PortParams = { id: string; port: string; "*"?: string };

export function exposedPortRoutes(app: FastifyInstance, { store, sandboxes, quotas }: { store: Store; sandboxes: SandboxManager; quotas?: WorkspaceQuotas }): void {
  const handler = async (request: FastifyRequest<{ Params: PortParams }>, reply: FastifyReply) => {
    const { id } = request.params;
    const port = Number(request.params.port);
    const notFound = () => new Beta9Error("RESOURCE_NOT_FOUND", { kind: "exposed port", id: `${id.slice(0, 64)}:${request.params.port.slice(0, 8)}` });
    const record = id.length <= 128 ? await store.sandboxes.getAny(id) : undefined;
    const exposure = record?.config.exposed.find((e) => e.port === port);
    if (!record || !exposure) throw notFound();
    let tokenId: string | undefined;
    if (!exposure.public) {
      const key = bearerKey(request);
      if (key === undefined) throw new Beta9Error("AUTH_TOKEN_MISSING");
      const auth = key.length <= 256 ? await store.tokens.authenticate(key) : undefined;
      if (!auth) throw new Beta9Error("AUTH_TOKEN_INVALID");
      if (!["admin", "workspace", "restricted"].includes(auth.type)) {
        throw new Beta9Error("AUTH_FORBIDDEN", { tokenType: auth.type, action: "reach a sandbox's port", allowed: "admin or workspace or restricted" });
      }
      if (auth.workspaceId !== record.workspaceId) throw notFound();
      tokenId = auth.id;
    }
    // Through the daemon, which dials 127.0.0.1:port inside: one published port (tunnels included) serves all.
    const origin = await sandboxes.origin(record);
    const client = upgradeOf(request);
    if (client) {
      const release = holdSocket({ store, quotas }, record.workspaceId, exposure.public ? `port:${record.id}:${port}` : undefined);
      if (!release) return refuseOverCount({ quotas }, client, reply, exposure.public);
      reply.hijack();
      const daemon = new URL(origin);
      proxyWebSocket(client, {
        host: daemon.hostname, port: Number(daemon.port), path: DAEMON_PROXY_PATH,
        headers: {
          ...forwardedHeaders(request.headers, request.ip, { keepCookies: hostRouted(request) }),
          ...(record.config.secret !== undefined && { authorization: `Bearer ${record.config.secret}` }),
          [PROXY_PORT_HEADER]: String(port), [PROXY_PATH_HEADER]: portPath(request.url),
        },
      }, {
        maxMessageBytes: quotasOf({ quotas }).webSocketMessageBytes, onClose: release,
        ownOrigin: hostRouted(request), ...(tokenId !== undefined && { tokenId }),
      });
      return;
    }
    const hasBody = request.method !== "GET" && request.method !== "DELETE" && request.body !== undefined;
    // The port and the caller's path travel in headers to the daemon's fixed /proxy route, never in
    // its URL: a path like /../../exec must not resolve to the daemon's own API.
    const ownOrigin = hostRouted(request);
    const res = await forward({ url: `${origin}${DAEMON_PROXY_PATH}`, secret: record.config.secret }, {
      method: request.method as (typeof METHODS)[number],
      headers: {
        ...forwardedHeaders(request.headers, request.ip, { keepCookies: ownOrigin }),
        [PROXY_PORT_HEADER]: String(port), [PROXY_PATH_HEADER]: portPath(request.url),
      },
      body: hasBody ? (request.body as Readable) : null,
    });
    return relayAll(reply, res, { ownOrigin });
  };

  app.register(async (scope) => {
    // Bytes pass through untouched, whatever their type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
    for (const url of ["/sandbox/:id/port/:port", "/sandbox/:id/port/:port/*"]) {
      scope.route<{ Params: PortParams }>({
        method: [...METHODS], url, config: { access: "public" },
        schema: { tags: ["sandbox"], summary: "A port the sandbox exposes (token unless exposed as public)", hide: url.endsWith("*") },
        handler,
      });
    }
  });
}
