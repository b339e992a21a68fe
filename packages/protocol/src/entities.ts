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

export const STUB_KINDS = ["endpoint", "taskqueue", "function", "schedule", "sandbox", "pod"] as const;
export type StubKind = (typeof STUB_KINDS)[number];
export const STUB_TYPES = STUB_KINDS.flatMap((k) => [`${k}/deployment`, `${k}/serve`] as const);
export type StubType = `${StubKind}/${"deployment" | "serve"}`;

export const TASK_STATUSES = [
  "PENDING", "RUNNING", "COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED", "RETRY",
] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Lifecycle only; cordoned and draining are flags on the machine, orthogonal to its state. */
export const MACHINE_STATES = ["pending", "registered", "ready", "expired"] as const;
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

/** How a task's `error` starts when its runner refused the input (422): a function call answers 422 INPUT_INVALID. */
export const INPUT_INVALID_TASK_ERROR = "input invalid: ";

/**
 * Why a container waits to be placed: what no connected worker has free, with the figures. The
 * scheduler keeps the latest per stub while its containers wait (scheduler/placement.ts).
 */
export const CapacityWaitSchema = Type.Object({
  message: Type.String({ description: 'e.g. "waiting for capacity: needs 1000m CPU, 250m free on 1 worker"' }),
  constraints: Type.Array(StringEnum(["no_worker", "unusable", "cpu", "memory", "gpu"] as const), {
    description: "what is short: no worker (none connected or schedulable), unusable (none may run it), or the resources none has free",
  }),
  workers: Type.Integer({ description: "connected workers that could run it were there room" }),
  needs: Type.Object({ cpuMillicores: Type.Integer(), memoryMiB: Type.Integer(), gpu: Type.Array(Type.String()), gpuCount: Type.Integer() }),
  free: Type.Object({
    cpuMillicores: Type.Integer(), memoryMiB: Type.Integer(), gpus: Type.Integer({ description: "of the wanted types" }),
  }, { description: "the most free on any one of those workers (each figure on its own)" }),
  since: Timestamp,
});
export type CapacityWait = Static<typeof CapacityWaitSchema>;

export const TaskSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  stubId: Type.String(),
  /** The stub's (workload's) name, joined in by the store's reads. */
  stubName: Type.Optional(Type.String()),
  status: StringEnum(TASK_STATUSES),
  retries: Type.Integer({ description: "attempts that failed and were retried" }),
  maxRetries: Type.Integer(),
  containerId: Nullable(Type.String()),
  error: Nullable(Type.String()),
  result: Type.Unknown({ description: "the handler's return value once COMPLETE, else null" }),
  createdAt: Timestamp,
  startedAt: Nullable(Timestamp),
  endedAt: Nullable(Timestamp),
  expiresAt: Nullable(Timestamp),
  /** While RETRY: when the next attempt may start. */
  nextAttemptAt: Nullable(Timestamp),
  /** Set by `GET /task/:id` while the task waits and its stub's containers wait for capacity. */
  waiting: Type.Optional(CapacityWaitSchema),
});
export type Task = Static<typeof TaskSchema>;
export const TERMINAL_TASK_STATUSES: readonly TaskStatus[] = ["COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"];

/** A secret as every route shows it: its name and dates, never its value. */
export const SecretSchema = Type.Object({
  name: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Secret = Static<typeof SecretSchema>;

export const PoolSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  createdAt: Timestamp,
});
export type Pool = Static<typeof PoolSchema>;

/** What a machine's agent reports at each keepalive (kept for `beta9 machine list`). */
export const MachineMetricsSchema = Type.Object({
  cpuPercent: Type.Number({ minimum: 0, maximum: 100 }),
  memoryPercent: Type.Number({ minimum: 0, maximum: 100 }),
  diskPercent: Type.Number({ minimum: 0, maximum: 100 }),
  gpus: Type.Object({ total: Type.Integer({ minimum: 0 }), free: Type.Integer({ minimum: 0 }) }),
  containers: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false });
export type MachineMetrics = Static<typeof MachineMetricsSchema>;

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
  os: Nullable(Type.String()),
  arch: Nullable(Type.String()),
  agentVersion: Nullable(Type.String()),
  cordoned: Type.Boolean({ description: "Gets no new containers" }),
  draining: Type.Boolean({ description: "Cordoned and its containers are being stopped so their work moves elsewhere" }),
  metrics: Nullable(MachineMetricsSchema),
  /** Live values from the scheduler (not stored): whether its worker is connected, and its containers. */
  workerConnected: Type.Boolean(),
  runningContainers: Type.Integer(),
});
export type Machine = Static<typeof MachineSchema>;

export const ContainerSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  stubId: Nullable(Type.String()),
  /** The stub's (workload's) name, in list and get answers. */
  stubName: Type.Optional(Type.String()),
  imageId: Nullable(Type.String()),
  workerId: Nullable(Type.String()),
  state: StringEnum(["PENDING", "RUNNING", "STOPPING", "EXITED"] as const),
  exitCode: Nullable(Type.Integer()),
  reason: Nullable(Type.String({ description: "exited, oom, stopped, failed, worker_lost or unschedulable" })),
  message: Nullable(Type.String()),
  command: Type.Array(Type.String()),
  cpuMillicores: Type.Integer(),
  memoryMiB: Type.Integer(),
  gpu: Nullable(Type.String()),
  ports: Type.Record(Type.String(), Type.Object({ host: Type.String(), port: Type.Integer() })),
  createdAt: Timestamp,
  startedAt: Nullable(Timestamp),
  endedAt: Nullable(Timestamp),
});
export type Container = Static<typeof ContainerSchema>;

/** A sandbox as the API answers it (the gateway's sandbox routes, the SDK's Sandbox). */
export const SandboxSchema = Type.Object({
  id: Type.String(),
  workspaceId: Type.String(),
  containerId: Type.String(),
  state: StringEnum(["PENDING", "RUNNING", "TERMINATED"] as const),
  /** Why it ended: terminated, expired, exited, failed, worker_lost. */
  reason: Type.Union([Type.String(), Type.Null()]),
  imageId: Type.Union([Type.String(), Type.Null()]),
  cpuMillicores: Type.Integer(),
  memoryMiB: Type.Integer(),
  ttlSeconds: Type.Integer(),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
  workerId: Type.Union([Type.String(), Type.Null()]),
  exposed: Type.Array(Type.Object({ port: Type.Integer(), public: Type.Boolean(), url: Type.String() })),
  volumes: Type.Array(Type.Object({ name: Type.String(), mountPath: Type.String() })),
  blockNetwork: Type.Boolean(),
  /** null: the default egress policy. */
  allowList: Type.Union([Type.Array(Type.String()), Type.Null()]),
  createdAt: Type.String(),
  endedAt: Type.Union([Type.String(), Type.Null()]),
});
export type Sandbox = Static<typeof SandboxSchema>;

export const LogLineSchema = Type.Object({
  stream: StringEnum(["stdout", "stderr"] as const),
  line: Type.String(),
  at: Type.Number({ description: "Unix ms when the worker read the line" }),
  taskId: Type.Optional(Type.String({ description: "The task the runner was running when the line was printed" })),
});

export const WorkerSchema = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  pool: Type.String(),
  runtime: Type.String(),
  isolates: Type.Boolean(),
  connected: Type.Boolean(),
  cordoned: Type.Boolean(),
  lastSeenAt: Timestamp,
  capacity: Type.Object({ cpuMillicores: Type.Integer(), memoryMiB: Type.Integer(), gpus: Type.Array(Type.Object({ type: Type.String(), count: Type.Integer() })) }),
  free: Type.Object({ cpuMillicores: Type.Integer(), memoryMiB: Type.Integer() }),
  containers: Type.Integer(),
});
export type WorkerInfo = Static<typeof WorkerSchema>;

export const IMAGE_STATUSES = ["building", "ready", "failed"] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export const ImageSchema = Type.Object({
  id: Type.String({ description: "sha256 of the canonical spec, 32 hex characters" }),
  status: StringEnum(IMAGE_STATUSES),
  spec: Type.Unknown({ description: "the canonical image spec" }),
  size: Nullable(Type.Integer({ description: "bytes of the packed (squashfs) image" })),
  sha256: Nullable(Type.String()),
  error: Nullable(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export interface Image {
  id: string;
  status: ImageStatus;
  spec: unknown;
  size: number | null;
  sha256: string | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A `beta9 serve` session as the gateway answers it (POST /api/v1/serve and its siblings). */
export interface ServeSession {
  id: string;
  workspaceId: string;
  stubId: string;
  kind: string;
  createdAt: string;
  /** The container serving it now (null while the first one starts). */
  containerId: string | null;
  ready: boolean;
  /** Hot reloads so far. */
  reloads: number;
  /** Path under the gateway to call it. */
  url: string;
}
