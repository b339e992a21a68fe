/**
 * Stub configuration: what a user writes (`StubConfigInput`, loose units, everything optional)
 * and what the gateway stores (`StubConfig`, canonical units, every field present). The canonical
 * form is hashed so that an unchanged config reuses its stub.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { normalizeGpu, parseCpu, parseMemory, ResourceParseError } from "./resources.js";
import type { StubKind } from "./entities.js";
import { AllowListSchema, egressPolicy, EgressPolicySchema, EgressRuleError } from "./egress.js";
import { inputSchemaProblem, InputSchemaSchema, type InputSchema } from "./input-schema.js";

const EnvName = Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", maxLength: 256 });
const ResourceName = Type.String({ pattern: "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" });

/** A named volume of the workspace mounted read-write at an absolute path in every container. */
export const VolumeMountSchema = Type.Object(
  { name: ResourceName, mountPath: Type.String({ pattern: "^/", maxLength: 1024 }) },
  { additionalProperties: false },
);

const RESERVED_MOUNT_PATHS = ["/", "/beta9", "/app", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64"];

/**
 * Where a volume may go: an absolute path that hides nothing a container needs to work; the
 * normalized path, or undefined when it is reserved.
 */
export function volumeMountPath(raw: string): string | undefined {
  const path = posix.normalize(raw).replace(/\/+$/, "");
  if (path === "" || RESERVED_MOUNT_PATHS.some((r) => path === r || (r !== "/" && path.startsWith(`${r}/`)))) return undefined;
  return path;
}

export const TaskPolicyInputSchema = Type.Object(
  {
    maxRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 5 })),
    timeout: Type.Optional(Type.Integer({ minimum: -1, maximum: 86_400, description: "seconds; -1 disables" })),
    ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: "seconds a task may wait" })),
  },
  { additionalProperties: false },
);

export const AutoscalerInputSchema = Type.Object(
  {
    type: Type.Literal("queue_depth"),
    maxContainers: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    tasksPerContainer: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    minContainers: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  },
  { additionalProperties: false },
);

export const StubConfigInputSchema = Type.Object(
  {
    cpu: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
    memory: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
    gpu: Type.Optional(
      Type.Union([Type.String({ maxLength: 32 }), Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 })]),
    ),
    gpuCount: Type.Optional(Type.Integer({ minimum: 0, maximum: 8 })),
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    concurrentRequests: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    keepWarmSeconds: Type.Optional(Type.Integer({ minimum: -1, maximum: 86_400 })),
    maxPendingTasks: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    taskPolicy: Type.Optional(TaskPolicyInputSchema),
    autoscaler: Type.Optional(AutoscalerInputSchema),
    callbackUrl: Type.Optional(Type.String({ maxLength: 2048 })),
    secrets: Type.Optional(Type.Array(EnvName, { maxItems: 256 })),
    env: Type.Optional(Type.Record(EnvName, Type.String({ maxLength: 32_768 }))),
    authorized: Type.Optional(Type.Boolean()),
    imageId: Type.Optional(Type.String({ pattern: "^[a-f0-9]{16,64}$" })),
    handler: Type.Optional(Type.String({ pattern: "^[^:]+:[A-Za-z_$][A-Za-z0-9_$]*$", maxLength: 1024 })),
    when: Type.Optional(Type.String({ maxLength: 128 })),
    pool: Type.Optional(ResourceName),
    ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65_535 }), { maxItems: 32 })),
    volumes: Type.Optional(Type.Array(VolumeMountSchema, { maxItems: 16 })),
    /** No network at all (mutually exclusive with allowList). */
    blockNetwork: Type.Optional(Type.Boolean()),
    /** Egress only to these IPv4 CIDRs ("CIDR", "CIDR:PORT", "CIDR:LOW-HIGH"), plus DNS. */
    allowList: Type.Optional(AllowListSchema),
    /** The input's schema (what the SDKs emit): a bad input is refused with 422 before it runs. */
    inputs: Type.Optional(InputSchemaSchema),
    /** An endpoint that is a web app (`webApp()`): any method and path under its URL reach its fetch handler. */
    webApp: Type.Optional(Type.Boolean()),
    /** An endpoint whose handler takes WebSockets (`realtime()`): upgrades to its URL reach it. */
    realtime: Type.Optional(Type.Boolean()),
    /** A pod's command (replaces the image's ENTRYPOINT and CMD); absent: the image's own. */
    entrypoint: Type.Optional(Type.Array(Type.String({ maxLength: 32_768 }), { minItems: 1, maxItems: 256 })),
    /** A pod is ready when this path on its port answers 2xx/3xx (default: when the port accepts a connection). */
    healthPath: Type.Optional(Type.String({ pattern: "^/[^\\s]*$", maxLength: 1024 })),
    /** Seconds a pod's container may take to become ready before it is stopped as failed (default 300). */
    readyTimeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  },
  { additionalProperties: false },
);
export type StubConfigInput = Static<typeof StubConfigInputSchema>;

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

export const StubConfigSchema = Type.Object({
  cpuMillicores: Type.Integer(),
  memoryMiB: Type.Integer(),
  gpu: Type.Array(Type.String()),
  gpuCount: Type.Integer(),
  workers: Type.Integer(),
  concurrentRequests: Type.Integer(),
  keepWarmSeconds: Type.Integer(),
  maxPendingTasks: Type.Integer(),
  taskPolicy: Type.Object({ maxRetries: Type.Integer(), timeout: Type.Integer(), ttl: Type.Integer() }),
  autoscaler: Type.Object({
    type: Type.Literal("queue_depth"),
    maxContainers: Type.Integer(),
    tasksPerContainer: Type.Integer(),
    minContainers: Type.Integer(),
  }),
  callbackUrl: Nullable(Type.String()),
  secrets: Type.Array(Type.String()),
  env: Type.Record(Type.String(), Type.String()),
  authorized: Type.Boolean(),
  imageId: Nullable(Type.String()),
  handler: Nullable(Type.String()),
  when: Nullable(Type.String()),
  pool: Nullable(Type.String()),
  ports: Type.Array(Type.Integer()),
  /** Absent when none, so configs without volumes keep their hash. */
  volumes: Type.Optional(Type.Array(Type.Object({ name: Type.String(), mountPath: Type.String() }))),
  /** Absent for the default policy (so older configs keep their hash). */
  egress: Type.Optional(EgressPolicySchema),
  /** Absent when the workload declares none. */
  inputs: Type.Optional(Type.Unsafe<InputSchema>({})),
  /** Present (true) only for web apps, so other configs keep their hash. */
  webApp: Type.Optional(Type.Literal(true)),
  /** Present (true) only for realtime endpoints, so other configs keep their hash. */
  realtime: Type.Optional(Type.Literal(true)),
  /** Present only for pods (any container serving its own port), so other configs keep their hash. */
  pod: Type.Optional(Type.Object({
    port: Type.Integer(),
    entrypoint: Nullable(Type.Array(Type.String())),
    healthPath: Nullable(Type.String()),
    readyTimeout: Type.Integer(),
  })),
});
export type StubConfig = Static<typeof StubConfigSchema>;

/** Defaults per workload kind, as beta9 has them (reference: beta9 §1.1). */
const kindDefaults: Record<StubKind, { cpu: number; keepWarmSeconds: number; timeout: number; maxRetries: number; authorized: boolean }> = {
  endpoint: { cpu: 1000, keepWarmSeconds: 180, timeout: 180, maxRetries: 0, authorized: true },
  taskqueue: { cpu: 1000, keepWarmSeconds: 10, timeout: 3600, maxRetries: 3, authorized: true },
  function: { cpu: 125, keepWarmSeconds: 0, timeout: 3600, maxRetries: 3, authorized: true },
  schedule: { cpu: 1000, keepWarmSeconds: 0, timeout: 3600, maxRetries: 3, authorized: true },
  sandbox: { cpu: 1000, keepWarmSeconds: 600, timeout: -1, maxRetries: 0, authorized: true },
  pod: { cpu: 1000, keepWarmSeconds: 180, timeout: 180, maxRetries: 0, authorized: true },
};

/** A pod's container serves many requests at once unless told otherwise (its own server decides). */
const POD_CONCURRENT_REQUESTS = 32;
const POD_READY_TIMEOUT_S = 300;

/** The pod part of a config: checks what only pods take and what pods must have. */
function podConfig(kind: StubKind, input: StubConfigInput): StubConfig["pod"] {
  if (kind !== "pod") {
    for (const name of ["entrypoint", "healthPath", "readyTimeout"] as const) {
      if (input[name] !== undefined) throw new StubConfigError(name, "only pods take it");
    }
    return undefined;
  }
  for (const name of ["handler", "inputs", "webApp"] as const) {
    if (input[name] !== undefined) throw new StubConfigError(name, "a pod runs its image's own server, not a handler; leave it out");
  }
  if (input.imageId === undefined) throw new StubConfigError("imageId", "a pod runs an image: build one (e.g. Image.fromRegistry) and pass its id");
  const ports = [...new Set(input.ports ?? [])];
  if (ports.length !== 1) throw new StubConfigError("ports", "a pod serves exactly one port, e.g. [8000]");
  return { port: ports[0]!, entrypoint: input.entrypoint ?? null, healthPath: input.healthPath ?? null, readyTimeout: input.readyTimeout ?? POD_READY_TIMEOUT_S };
}

/** A semantic problem with one field of a config; the gateway answers it as INVALID_CONFIG. */
export class StubConfigError extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(`config.${field}: ${reason}`);
    this.name = "StubConfigError";
  }
}

const CRON_ALIASES = new Set(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]);
const CRON_FIELD = /^[\d*,\-/A-Za-z?LW#]+$/;

function field<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ResourceParseError || err instanceof EgressRuleError) throw new StubConfigError(name, err.message);
    throw err;
  }
}

/** Validated input (types already checked against the schema) → canonical stored config. */
export function normalizeStubConfig(kind: StubKind, input: StubConfigInput): StubConfig {
  const d = kindDefaults[kind];
  const gpu = input.gpu === undefined ? [] : field("gpu", () => normalizeGpu(input.gpu));
  const gpuCount = input.gpuCount ?? (gpu.length > 0 ? 1 : 0);
  if (gpuCount > 0 && gpu.length === 0) throw new StubConfigError("gpuCount", "set gpu to a GPU type (or \"any\") as well");
  if (gpu.length > 0 && gpuCount === 0) throw new StubConfigError("gpuCount", "must be at least 1 when gpu is set");

  const maxContainers = input.autoscaler?.maxContainers ?? 1;
  const minContainers = input.autoscaler?.minContainers ?? 0;
  if (minContainers > maxContainers) {
    throw new StubConfigError("autoscaler.minContainers", `must not exceed maxContainers (${maxContainers})`);
  }
  if (input.callbackUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(input.callbackUrl);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new StubConfigError("callbackUrl", "must be an absolute http:// or https:// URL");
    }
  }
  if (kind === "schedule") {
    if (input.when === undefined) throw new StubConfigError("when", 'a schedule needs a cron expression, e.g. "*/5 * * * *" or "@hourly"');
    const parts = input.when.trim().split(/\s+/);
    // Six fields put seconds first ("*/10 * * * * *"): finer than beta9's minutes, for fast jobs and tests.
    const ok = CRON_ALIASES.has(input.when.trim()) || ((parts.length === 5 || parts.length === 6) && parts.every((p) => CRON_FIELD.test(p)));
    if (!ok) throw new StubConfigError("when", 'must be five cron fields ("*/5 * * * *"), six with seconds first ("*/10 * * * * *"), or @hourly, @daily, @weekly, @monthly, @yearly');
  } else if (input.when !== undefined) {
    throw new StubConfigError("when", "only schedules take a cron expression");
  }
  const volumes = (input.volumes ?? []).map((v, i) => {
    const mountPath = volumeMountPath(v.mountPath);
    if (!mountPath) throw new StubConfigError(`volumes.${i}.mountPath`, `${v.mountPath} is reserved; mount volumes elsewhere, e.g. /mnt/models or /workspace/data`);
    return { name: v.name, mountPath };
  });
  if (new Set(volumes.map((v) => v.mountPath)).size !== volumes.length) throw new StubConfigError("volumes", "two volumes share a mountPath");
  const egress = field("allowList", () => egressPolicy(input.blockNetwork, input.allowList));
  if (input.inputs !== undefined) {
    if (kind === "schedule" || kind === "sandbox") throw new StubConfigError("inputs", "only endpoints, task queues and functions take an input");
    const problem = inputSchemaProblem(input.inputs);
    if (problem) throw new StubConfigError("inputs", problem);
  }
  if (input.webApp === true) {
    if (kind !== "endpoint") throw new StubConfigError("webApp", "only endpoints can be web apps");
    if (input.inputs !== undefined) throw new StubConfigError("inputs", "a web app takes HTTP requests, not a JSON input; check requests in the app");
  }
  if (input.realtime === true) {
    if (kind !== "endpoint") throw new StubConfigError("realtime", "only endpoints take WebSockets (realtime())");
    if (input.webApp === true) throw new StubConfigError("realtime", "a web app accepts WebSockets itself (upgradeWebSocket(request)); leave realtime out");
    if (input.inputs !== undefined) throw new StubConfigError("inputs", "a realtime endpoint takes messages on its socket, not a JSON input");
  }
  const pod = podConfig(kind, input);
  const concurrentRequests = input.concurrentRequests ?? (pod ? POD_CONCURRENT_REQUESTS : 1);
  if ((kind === "endpoint" || kind === "pod") && input.taskPolicy?.timeout === -1) {
    throw new StubConfigError("taskPolicy.timeout", "endpoints need a timeout; -1 is only for queues and functions");
  }

  return {
    cpuMillicores: input.cpu === undefined ? d.cpu : field("cpu", () => parseCpu(input.cpu)),
    memoryMiB: input.memory === undefined ? 128 : field("memory", () => parseMemory(input.memory)),
    gpu,
    gpuCount,
    workers: input.workers ?? 1,
    concurrentRequests,
    keepWarmSeconds: input.keepWarmSeconds ?? d.keepWarmSeconds,
    maxPendingTasks: input.maxPendingTasks ?? 100,
    taskPolicy: {
      maxRetries: input.taskPolicy?.maxRetries ?? d.maxRetries,
      timeout: input.taskPolicy?.timeout ?? d.timeout,
      ttl: input.taskPolicy?.ttl ?? 86_400,
    },
    autoscaler: {
      type: "queue_depth",
      maxContainers,
      // Pods scale by concurrent requests: a new container once each holds its share.
      tasksPerContainer: input.autoscaler?.tasksPerContainer ?? (pod ? concurrentRequests : 1),
      minContainers,
    },
    callbackUrl: input.callbackUrl ?? null,
    secrets: [...new Set(input.secrets ?? [])].sort(),
    env: Object.fromEntries(Object.entries(input.env ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))),
    authorized: input.authorized ?? d.authorized,
    imageId: input.imageId ?? null,
    handler: input.handler ?? null,
    when: input.when?.trim() ?? null,
    pool: input.pool ?? null,
    ports: [...new Set(input.ports ?? [])].sort((a, b) => a - b),
    ...(volumes.length > 0 && { volumes }),
    ...(egress && { egress }),
    ...(input.inputs !== undefined && { inputs: input.inputs as InputSchema }),
    ...(input.webApp === true && { webApp: true as const }),
    ...(input.realtime === true && { realtime: true as const }),
    ...(pod && { pod }),
  };
}

/** JSON with object keys sorted at every depth, so equal values serialize to equal strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function hashStubConfig(config: StubConfig): string {
  return createHash("sha256").update(canonicalJson(config)).digest("hex");
}
