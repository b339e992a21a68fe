/**
 * Authentication and route access. Every route declares `config.access`; a route without one is
 * refused for every token (fail closed), so a forgotten declaration cannot open a route.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Beta9Error, type TokenType } from "@beta9/protocol";
import type { AuthenticatedToken, TokenRepo } from "../store/types.js";

/**
 * - `public`: no token (health, OpenAPI).
 * - `read`: look at the workspace's resources (restricted tokens too).
 * - `write`: change them: upload, deploy, stop, manage tokens.
 * - `admin`: cluster-wide operations (workspaces, pools, metrics).
 * - `worker`: what workers fetch and upload (code, images); a machine's worker uses its machine token.
 * - `machine`: the agent protocol only (register, keepalive).
 */
export type Access = "public" | "read" | "write" | "admin" | "worker" | "machine";

const allowedTypes: Record<Exclude<Access, "public">, readonly TokenType[]> = {
  read: ["admin", "workspace", "restricted"],
  write: ["admin", "workspace"],
  admin: ["admin"],
  worker: ["worker", "admin", "machine"],
  machine: ["machine"],
};

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    auth: AuthenticatedToken;
  }
}

/** The bearer key from the Authorization header, or `undefined`. */
export function bearerKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== "string") return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

export function registerAuth(app: FastifyInstance, tokens: TokenRepo): void {
  app.decorateRequest("auth", null as unknown as AuthenticatedToken);
  app.addHook("onRequest", async (request) => {
    const access = request.routeOptions.config?.access;
    if (access === "public") return;
    // Unmatched URLs still pass through here; let the not-found handler answer them.
    if (request.is404) return;
    const key = bearerKey(request);
    if (key === undefined) throw new Beta9Error("AUTH_TOKEN_MISSING");
    const auth = key.length <= 256 ? await tokens.authenticate(key) : undefined;
    if (!auth) throw new Beta9Error("AUTH_TOKEN_INVALID");
    const allowed = access ? allowedTypes[access] : [];
    if (!allowed.includes(auth.type)) {
      throw new Beta9Error("AUTH_FORBIDDEN", {
        tokenType: auth.type,
        action: `${request.method} ${request.routeOptions.url ?? request.url}`,
        allowed: allowed.length > 0 ? allowed.join(" or ") : "(none: this route is not open to tokens)",
      });
    }
    request.auth = auth;
  });
}
