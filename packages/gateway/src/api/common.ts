/** Small pieces every route module uses: the shared context, paging, 404s, response schemas. */
import type { WorkspaceQuotas } from "../quotas.js";
import type {} from "@fastify/swagger"; // route schemas carry OpenAPI fields (tags, summary, hide)
import { Type, type TSchema } from "@sinclair/typebox";
import { Beta9Error, checkInput, errorCatalogue, ResourceParseError, type Stub } from "@beta9/protocol";
import type { ObjectStore } from "../objects/object-store.js";
import type { ImageBuilds } from "../images/image-builds.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { Autoscaler } from "../workloads/autoscaler.js";
import type { TaskDispatcher } from "../tasks/dispatcher.js";
import type { MachineRegistry } from "../machines/registry.js";
import type { ShellSessions } from "../shell/sessions.js";
import type { Secrets } from "../secrets/secrets.js";
import type { SandboxManager } from "../sandboxes/manager.js";
import type { VolumeStore } from "../volumes/volume-store.js";
import type { Page, Store } from "../store/types.js";
import type { LogStore } from "../logs/types.js";

export interface GatewayContext {
  store: Store;
  objects: ObjectStore;
  scheduler: Scheduler;
  builds: ImageBuilds;
  autoscaler: Autoscaler;
  dispatcher: TaskDispatcher;
  /** The server passes its registry (with the expiry timer); absent, the routes make their own. */
  machines?: MachineRegistry;
  /** The server passes its manager (reaper, shut down on close); absent, the routes make their own. */
  sandboxes?: SandboxManager;
  /** The server passes its volume store (swept at start and hourly); absent, the routes make their own. */
  volumes?: VolumeStore;
  /** Workspace secrets; absent, the secret routes are not served and stubs may name none. */
  secrets?: Secrets;
  /** Exposed ports get `<id>-<port>.<sandboxHost>` URLs (wildcard DNS to the gateway); unset: path URLs. */
  sandboxHost?: string;
  /** Per-workspace limits (default DEFAULT_QUOTAS). */
  quotas?: WorkspaceQuotas;
  /** A CA (PEM) trusted besides the system's for the other gateways' https URLs (forward.ts). */
  peerCa?: string;
  /** Durable container logs; absent, the log routes keep them in memory for the app's life (tests). */
  logs?: LogStore;
  /** Shell sessions (they ride the worker tunnels, so only the server has them); absent, shell routes answer 503. */
  shells?: ShellSessions;
  version: string;
  schemaVersion: number;
  startedAt: number;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function toPage(query: { limit?: string; offset?: string }): Page {
  const limit = query.limit === undefined ? DEFAULT_PAGE_SIZE : Number(query.limit);
  return { limit: Math.min(Math.max(limit, 1), MAX_PAGE_SIZE), offset: query.offset === undefined ? 0 : Number(query.offset) };
}

/** Returns the value, or throws RESOURCE_NOT_FOUND naming what was looked for. */
export function found<T>(value: T | undefined, kind: string, id: string): T {
  if (value === undefined) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind, id });
  return value;
}

export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ enum: Object.keys(errorCatalogue) }),
      message: Type.String(),
      details: Type.Optional(Type.Unknown()),
    }),
  },
  { description: "Every error: a stable code from the catalogue and a message that says what to fix" },
);

/** Response schemas for OpenAPI and fast serialization: the success shape plus the error shape. */
export function responses(ok: Record<number, TSchema>): Record<string, TSchema> {
  return { ...ok, "4xx": ErrorBodySchema, "5xx": ErrorBodySchema };
}

export const Items = <T extends TSchema>(item: T) => Type.Object({ items: Type.Array(item) });

/**
 * The stub behind an invocation route: the named deployment's `latest` active version or version
 * N, in the caller's workspace. Unknown → 404, stopped → 409 DEPLOYMENT_STOPPED.
 */
export async function resolveDeployedStub(store: Store, workspaceId: string, name: string, version: number | "latest"): Promise<Stub> {
  const deployment = await store.deployments.resolve(workspaceId, name, version);
  if (!deployment) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "active deployment", id: version === "latest" ? name : `${name} v${version}` });
  if (!deployment.active) throw new Beta9Error("DEPLOYMENT_STOPPED", { name, version: deployment.version, id: deployment.id });
  return found(await store.stubs.get(workspaceId, deployment.stubId), "stub", deployment.stubId);
}

/** The N of a `/v:N` path segment; anything but a positive integer is a 422. */
export function parseVersion(raw: string): number {
  const version = Number(raw);
  if (!Number.isInteger(version) || version < 1) {
    throw new Beta9Error("VALIDATION_FAILED", { location: "path", path: ".version", reason: "must be a version number like v3" });
  }
  return version;
}

/** Parses one resource field (cpu, memory, gpu); a bad value is INVALID_CONFIG naming the field. */
export function resourceField<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ResourceParseError) throw new Beta9Error("INVALID_CONFIG", { field: name, reason: err.message });
    throw err;
  }
}

/**
 * A call's input, checked against the workload's declared schema before any task exists or any
 * container wakes: 422 INPUT_INVALID naming the field. An empty body is `{}` for an object schema
 * (both runners treat a call with no arguments that way), else null.
 */
export function checkedInput(stub: Stub, body: unknown): unknown {
  const schema = stub.config.inputs;
  if (schema === undefined) return body ?? null;
  const input = body === undefined && schema.type === "object" ? {} : (body ?? null);
  const problem = checkInput(schema, input);
  if (problem !== undefined) throw new Beta9Error("INPUT_INVALID", { reason: problem });
  return input;
}
