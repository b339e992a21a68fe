/**
 * The worker protocol: one WebSocket per worker, dialled out by the worker to
 * `GET /api/v1/worker/connect` with a worker token. JSON text frames, one message each. The
 * worker needs no inbound port; everything (placements, state, logs) travels on this connection.
 */
import { Type, type Static } from "@sinclair/typebox";
import { EgressPolicySchema } from "./egress.js";
import type { LogLineSchema } from "./entities.js";
import type { TunnelFailedMessage, TunnelOpenMessage } from "./machine-protocol.js";
import type { ShellOpenMessage } from "./shell-protocol.js";

export const WORKER_CONNECT_PATH = "/api/v1/worker/connect";

export const CONTAINER_STATES = ["PENDING", "RUNNING", "STOPPING", "EXITED"] as const;
export type ContainerState = (typeof CONTAINER_STATES)[number];

/** Why an EXITED container ended; `worker_lost` and `unschedulable` are decided by the gateway. */
export const EXIT_REASONS = ["exited", "oom", "stopped", "failed", "worker_lost", "unschedulable"] as const;
export type ContainerExitReason = (typeof EXIT_REASONS)[number];

export const GpuInventorySchema = Type.Array(Type.Object({ type: Type.String(), count: Type.Integer({ minimum: 0 }) }));

export const WorkerCapacitySchema = Type.Object({
  cpuMillicores: Type.Integer({ minimum: 0 }),
  memoryMiB: Type.Integer({ minimum: 0 }),
  gpus: GpuInventorySchema,
});
export type WorkerCapacity = Static<typeof WorkerCapacitySchema>;

/** What the scheduler asks a worker to run. */
export const ContainerRequestSchema = Type.Object({
  containerId: Type.String(),
  workspaceId: Type.String(),
  stubId: Type.Union([Type.String(), Type.Null()]),
  /** null: the worker's built-in rootfs (its host's /usr, read-only); else a packed image id. */
  imageId: Type.Union([Type.String(), Type.Null()]),
  command: Type.Array(Type.String(), { minItems: 1 }),
  env: Type.Record(Type.String(), Type.String()),
  cpuMillicores: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 1 }),
  gpu: Type.Array(Type.String()),
  gpuCount: Type.Integer({ minimum: 0 }),
  ports: Type.Array(Type.Integer({ minimum: 1, maximum: 65_535 })),
  pool: Type.Union([Type.String(), Type.Null()]),
  /**
   * Run the runner on a code bundle instead of `command`: the worker fetches the bundle (an object
   * id), unpacks it read-only, and starts the runner with its own node on `handler`.
   */
  runner: Type.Optional(Type.Object({
    codeObjectId: Type.String(),
    handler: Type.String(),
    concurrency: Type.Integer({ minimum: 1 }),
  })),
  /**
   * Run a built-in daemon instead of `command`: "sandbox" starts the sandbox daemon (processes,
   * files, code) with the runner's own node, listening on the first of `ports`.
   */
  daemon: Type.Optional(Type.Literal("sandbox")),
  /**
   * Run the image's own ENTRYPOINT + CMD (from its registry config) instead of `command`: a pod
   * deployed without an entrypoint of its own. The container fails at start when the image has none.
   */
  imageCommand: Type.Optional(Type.Boolean()),
  /**
   * Named volumes of the workspace, mounted read-write at `mountPath`: the worker materialises the
   * gateway's current version and commits the container's changes when it ends (worker/src/volumes/).
   */
  volumes: Type.Optional(Type.Array(Type.Object({ name: Type.String({ pattern: "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" }), mountPath: Type.String() }))),
  /** Egress narrower than the worker's default (see egress.ts); absent: the default. */
  egress: Type.Optional(EgressPolicySchema),
});
export type ContainerRequest = Static<typeof ContainerRequestSchema>;

export interface HostPortAddress {
  host: string;
  port: number;
}

export interface ContainerStateReport {
  containerId: string;
  state: ContainerState;
  exitCode?: number | null;
  reason?: ContainerExitReason;
  message?: string;
  /** Container port → where the worker reaches it. */
  ports?: Record<string, HostPortAddress>;
}

/** One line a container printed: the wire type is the API's schema (entities.ts LogLineSchema), defined once. */
export type LogLine = Static<typeof LogLineSchema>;

export type WorkerMessage =
  | {
      type: "hello";
      workerId: string;
      hostname: string;
      pool: string;
      runtime: "runc" | "process";
      isolates: boolean;
      capacity: WorkerCapacity;
      /** Containers still running from before a reconnect, so a (restarted) gateway can resync. */
      containers: (ContainerStateReport & { request: ContainerRequest })[];
      version: string;
      /**
       * Whether the gateway can dial the container ports this worker reports. Default: true for
       * worker tokens, false for machine tokens (then the gateway tunnels over this connection).
       * A machine's `true` is a hint only: the gateway dials a port directly only at the address the
       * connection came from, never a loopback, link-local or unspecified one; others are tunnelled.
       */
      reachable?: boolean;
      /**
       * The operator lets this worker run containers although its runtime isolates nothing
       * (`--allow-unisolated`). Without it, a worker with `isolates: false` takes no containers.
       */
      allowUnisolated?: boolean;
      /** This worker enforces per-container egress policies (blockNetwork, allowList); others get none of them. */
      filtersEgress?: boolean;
    }
  | TunnelFailedMessage
  | { type: "keepalive"; running: number }
  | ({ type: "container.state" } & ContainerStateReport)
  | { type: "container.logs"; containerId: string; lines: LogLine[] }
  | { type: "image.logs"; imageId: string; lines: LogLine[] }
  /** Sent after the packed image was uploaded (ok) or the build failed (error says which step and why). */
  | { type: "image.result"; imageId: string; ok: boolean; error?: string };

export type GatewayMessage =
  | { type: "welcome"; workerId: string; keepaliveMs: number }
  | { type: "container.run"; request: ContainerRequest }
  | { type: "container.stop"; containerId: string; graceMs?: number }
  /**
   * Build the image and upload it to PUT /api/v1/image/:id/blob; spec is canonical (see image-spec).
   * `credentials`: the values of the secrets the spec's registry base names, resolved for this build
   * only (sent to the building worker over its authenticated socket, never stored or logged).
   */
  | { type: "image.build"; imageId: string; spec: unknown; credentials?: { username: string; password: string } | { token: string } }
  /** Sent when the gateway refuses the connection's hello (bad capacity, duplicate id, …). */
  | { type: "error"; code: string; message: string }
  | TunnelOpenMessage
  /** Start a shell process in a container and stream it on a tunnel stream (shell-protocol.ts). */
  | ShellOpenMessage;

/**
 * The shape of every worker message, checked by the gateway before it acts on one: a worker (a
 * machine especially) is not trusted to send well-formed data. Sizes are bounded so one message
 * cannot make the gateway allocate without limit.
 */
const ContainerIdSchema = Type.String({ minLength: 1, maxLength: 128 });
const HostPortAddressSchema = Type.Object({ host: Type.String({ minLength: 1, maxLength: 255 }), port: Type.Integer({ minimum: 1, maximum: 65_535 }) });
const ContainerStateReportFields = {
  containerId: ContainerIdSchema,
  state: Type.Union(CONTAINER_STATES.map((s) => Type.Literal(s))),
  exitCode: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  reason: Type.Optional(Type.Union(EXIT_REASONS.map((r) => Type.Literal(r)))),
  message: Type.Optional(Type.String({ maxLength: 65_536 })),
  ports: Type.Optional(Type.Record(Type.String({ pattern: "^[0-9]{1,5}$" }), HostPortAddressSchema, { maxProperties: 256 })),
};
const LogLinesSchema = Type.Array(Type.Object({
  // Workers send lines of at most 16 Ki characters (longer ones split); more is refused.
  stream: Type.Union([Type.Literal("stdout"), Type.Literal("stderr")]), line: Type.String({ maxLength: 65_536 }), at: Type.Number(),
  taskId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
}), { maxItems: 10_000 });
export const WorkerMessageSchema = Type.Union([
  Type.Object({
    type: Type.Literal("hello"),
    workerId: Type.String({ minLength: 1, maxLength: 128 }),
    hostname: Type.String({ maxLength: 255 }),
    pool: Type.String({ maxLength: 128 }),
    runtime: Type.Union([Type.Literal("runc"), Type.Literal("process")]),
    isolates: Type.Boolean(),
    capacity: WorkerCapacitySchema,
    containers: Type.Array(Type.Object({ ...ContainerStateReportFields, request: ContainerRequestSchema }), { maxItems: 4096 }),
    version: Type.String({ maxLength: 128 }),
    reachable: Type.Optional(Type.Boolean()),
    allowUnisolated: Type.Optional(Type.Boolean()),
    filtersEgress: Type.Optional(Type.Boolean()),
  }),
  Type.Object({ type: Type.Literal("tunnel.failed"), streamId: Type.String({ maxLength: 128 }), message: Type.String({ maxLength: 65_536 }) }),
  Type.Object({ type: Type.Literal("keepalive"), running: Type.Integer({ minimum: 0 }) }),
  Type.Object({ type: Type.Literal("container.state"), ...ContainerStateReportFields }),
  Type.Object({ type: Type.Literal("container.logs"), containerId: ContainerIdSchema, lines: LogLinesSchema }),
  Type.Object({ type: Type.Literal("image.logs"), imageId: Type.String({ maxLength: 128 }), lines: LogLinesSchema }),
  Type.Object({ type: Type.Literal("image.result"), imageId: Type.String({ maxLength: 128 }), ok: Type.Boolean(), error: Type.Optional(Type.String()) }),
]);
