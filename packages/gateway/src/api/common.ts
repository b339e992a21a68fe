/** Small pieces every route module uses: the shared context, paging, 404s, response schemas. */
import type {} from "@fastify/swagger"; // route schemas carry OpenAPI fields (tags, summary, hide)
import { Type, type TSchema } from "@sinclair/typebox";
import { Beta9Error, errorCatalogue } from "@beta9/protocol";
import type { ObjectStore } from "../objects/object-store.js";
import type { ImageBuilds } from "../images/image-builds.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { Autoscaler } from "../workloads/autoscaler.js";
import type { TaskDispatcher } from "../tasks/dispatcher.js";
import type { Page, Store } from "../store/types.js";

export interface GatewayContext {
  store: Store;
  objects: ObjectStore;
  scheduler: Scheduler;
  builds: ImageBuilds;
  autoscaler: Autoscaler;
  dispatcher: TaskDispatcher;
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
