/**
 * The web dashboard's files (packages/dashboard/dist, built by `npm run build`), served from memory:
 * index.html at `/`, content-hashed assets under `/dashboard/`. Read once at start (a few tens of
 * KiB), with a gzip copy for clients that take it.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import type { FastifyReply, FastifyRequest } from "fastify";

export interface StaticFile {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

/**
 * Scripts, styles and requests from this origin only; no inline script or style attribute, no
 * frames, no forms posting elsewhere, no plugins. The app sets styles through the DOM (allowed).
 */
export const DASHBOARD_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "font-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join("; ");

/** Where the build puts the dashboard, from this file in packages/gateway/dist/api. */
export function defaultDashboardDir(): string {
  return process.env.BETA9_DASHBOARD_DIR ?? fileURLToPath(new URL("../../../dashboard/dist/", import.meta.url));
}

export function loadDashboard(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(join(dir, "index.html"))) return files;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type || !/^[A-Za-z0-9._-]+$/.test(name)) continue;
    const body = readFileSync(join(dir, name));
    const gzip = body.length > 512 ? gzipSync(body, { level: 9 }) : null;
    files.set(name, { body, gzip, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
  }
  return files;
}

/**
 * Answers one file. index.html is revalidated on every load (it names the current assets);
 * assets carry their content hash in the name, so they are cached for a year, immutable.
 */
export function sendStatic(request: FastifyRequest, reply: FastifyReply, file: StaticFile, immutable: boolean): FastifyReply {
  reply.header("content-type", file.type)
    .header("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache")
    .header("etag", file.etag)
    .header("vary", "accept-encoding")
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("cross-origin-opener-policy", "same-origin")
    .header("content-security-policy", DASHBOARD_CSP);
  if (request.headers["if-none-match"] === file.etag) return reply.code(304).send();
  const accepts = String(request.headers["accept-encoding"] ?? "");
  if (file.gzip && /\bgzip\b/.test(accepts)) return reply.header("content-encoding", "gzip").send(file.gzip);
  return reply.send(file.body);
}
