/**
 * Entity shapes as the API returns them. Each is a TypeBox schema (JSON Schema at run time, used
 * by the gateway for serialization and the OpenAPI document) and a static type of the same name.
 */
import { Type, type Static } from "@sinclair/typebox";
import { StubConfigSchema } from "./stub-config.js";

/** A string enum as JSON Schema `enum` (one clear validation error, unlike `anyOf` of literals). */
export const StringEnum = <T extends readonly string[]>(values: T, options: { description?: string } = {}) =>
  Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });

const Timestamp = Type.String({ format: "date-time", description: "ISO 8601, UTC" });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

export const TOKEN_TYPES = ["admin", "workspace", "restricted", "worker", "machine"] as const;
export type TokenType = (typeof TOKEN_TYPES)[number];

export const STUB_KINDS = ["endpoint", "taskqueue", "function", "schedule", "sandbox"] as const;
export type StubKind = (typeof STUB_KINDS)[number];
export const STUB_TYPES = STUB_KINDS.flatMap((k) => [`${k}/deployment`, `${k}/serve`] as const);
export type StubType = `${StubKind}/${"deployment" | "serve"}`;

export const TASK_STATUSES = [
  "PENDING", "RUNNING", "COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED", "RETRY",
] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const MACHINE_STATES = ["pending", "registered", "ready", "cordoned", "draining", "expired"] as const;
export type MachineState = (typeof MACHINE_STATES)[number];

export const WorkspaceSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Timestamp,
});
export type Workspace = Static<typeof WorkspaceSchema>;

export const TokenSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  type: StringEnum(TOKEN_TYPES),
  name: Nullable(Type.String()),
  prefix: Type.String({ description: "The first characters of the key, to tell tokens apart" }),
  active: Type.Boolean(),
  createdAt: Timestamp,
  revokedAt: Nullable(Timestamp),
});
export type Token = Static<typeof TokenSchema>;

export const TokenWithKeySchema = Type.Intersect([
  TokenSchema,
  Type.Object({ key: Type.String({ description: "Shown once; the gateway stores only its hash" }) }),
]);
export type TokenWithKey = Static<typeof TokenWithKeySchema>;

export const AppSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  name: Type.String(),
  createdAt: Timestamp,
});
export type App = Static<typeof AppSchema>;

export const ObjectSchema = Type.Object({
  hash: Type.String({ description: "sha256 of the bytes, lowercase hex" }),
  size: Type.Integer(),
  createdAt: Timestamp,
});
export type StoredObject = Static<typeof ObjectSchema>;

export const StubSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  appId: Type.String(),
  name: Type.String(),
  type: StringEnum(STUB_TYPES),
  objectId: Nullable(Type.String()),
  config: StubConfigSchema,
  configHash: Type.String(),
  createdAt: Timestamp,
});
export type Stub = Static<typeof StubSchema>;

export const DeploymentSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  appId: Type.String(),
  stubId: Type.String(),
  stubType: Type.String(),
  name: Type.String(),
  version: Type.Integer({ minimum: 1 }),
  active: Type.Boolean(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Deployment = Static<typeof DeploymentSchema>;

export const TaskSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  stubId: Type.String(),
  status: StringEnum(TASK_STATUSES),
  retries: Type.Integer(),
  containerId: Nullable(Type.String()),
  error: Nullable(Type.String()),
  createdAt: Timestamp,
  startedAt: Nullable(Timestamp),
  endedAt: Nullable(Timestamp),
});
export type Task = Static<typeof TaskSchema>;

export const PoolSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  createdAt: Timestamp,
});
export type Pool = Static<typeof PoolSchema>;

export const MachineSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  pool: Type.String(),
  state: StringEnum(MACHINE_STATES),
  hostname: Nullable(Type.String()),
  cpuMillicores: Type.Integer(),
  memoryMiB: Type.Integer(),
  gpus: Type.Array(Type.Object({ type: Type.String(), count: Type.Integer() })),
  lastKeepaliveAt: Nullable(Timestamp),
  createdAt: Timestamp,
});
export type Machine = Static<typeof MachineSchema>;
