/** Request and response schemas of the sandbox routes (validated strictly, documented in OpenAPI). */
import { Type, type Static } from "@sinclair/typebox";
import { AllowListSchema, NameSchema } from "@beta9/protocol";

const EnvSchema = Type.Record(Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", maxLength: 256 }), Type.String({ maxLength: 65_536 }));
const PathSchema = Type.String({ minLength: 1, maxLength: 4096 });
const Bool = Type.Union([Type.Literal("true"), Type.Literal("false")]);
/** The longest lifetime a sandbox may be given (7 days); -1 means until terminated. */
export const MAX_TTL_SECONDS = 7 * 24 * 3600;
const Ttl = Type.Integer({ minimum: -1, maximum: MAX_TTL_SECONDS });

export const CreateSandboxBodySchema = Type.Object({
  imageId: Type.Optional(Type.String({ pattern: "^[a-f0-9]{16,64}$" })),
  cpu: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
  memory: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
  env: Type.Optional(EnvSchema),
  /** Names of the workspace's secrets to set as environment variables. */
  secrets: Type.Optional(Type.Array(Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", maxLength: 256 }), { maxItems: 256 })),
  keepWarmSeconds: Type.Optional(Ttl),
  pool: Type.Optional(NameSchema),
  volumes: Type.Optional(Type.Array(Type.Object({
    name: NameSchema,
    mountPath: Type.String({ pattern: "^/", maxLength: 1024 }),
  }, { additionalProperties: false }), { maxItems: 16 })),
  /** No network at all; mutually exclusive with allowList. */
  blockNetwork: Type.Optional(Type.Boolean()),
  /** Egress only to these IPv4 CIDRs ("CIDR", "CIDR:PORT", "CIDR:LOW-HIGH"), plus DNS. */
  allowList: Type.Optional(AllowListSchema),
}, { additionalProperties: false });
export type CreateSandboxBody = Static<typeof CreateSandboxBodySchema>;

export const SandboxListQuerySchema = Type.Object({
  active: Type.Optional(Bool),
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
  offset: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
}, { additionalProperties: false });

export const SandboxGetQuerySchema = Type.Object({ wait: Type.Optional(Type.Literal("ready")) }, { additionalProperties: false });
export const TtlBodySchema = Type.Object({ ttlSeconds: Ttl }, { additionalProperties: false });
export const ExposeBodySchema = Type.Object({
  port: Type.Integer({ minimum: 1, maximum: 65_535 }),
  public: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

export const ExecBodySchema = Type.Object({
  cmd: Type.String({ minLength: 1, maxLength: 4096 }),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 131_072 }), { maxItems: 4096 })),
  cwd: Type.Optional(PathSchema),
  env: Type.Optional(EnvSchema),
  stdin: Type.Optional(Type.String({ maxLength: 512 * 1024 })),
}, { additionalProperties: false });

export const RunCodeBodySchema = Type.Object({
  code: Type.String({ maxLength: 512 * 1024 }),
  language: Type.Optional(Type.Union([Type.Literal("python"), Type.Literal("javascript"), Type.Literal("typescript")])),
  /** Seconds; past it the process is killed and the answer says `stopped: "timeout"`. */
  timeout: Type.Optional(Type.Number({ minimum: 0.001, maximum: 86_400, description: "seconds, more than 0" })),
  cwd: Type.Optional(PathSchema),
  env: Type.Optional(EnvSchema),
}, { additionalProperties: false });
export type RunCodeBody = Static<typeof RunCodeBodySchema>;

export const KillBodySchema = Type.Object({
  signal: Type.Optional(Type.Union(["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"].map((s) => Type.Literal(s)))),
}, { additionalProperties: false });

export const SandboxParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false });
export const PidParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  pid: Type.String({ pattern: "^[1-9][0-9]{0,9}$" }),
}, { additionalProperties: false });
export const PathQuerySchema = Type.Object({ path: PathSchema }, { additionalProperties: false });
export const WriteQuerySchema = Type.Object({ path: PathSchema, mode: Type.Optional(Type.String({ pattern: "^[0-7]{3,4}$" })) }, { additionalProperties: false });
export const RemoveQuerySchema = Type.Object({ path: PathSchema, recursive: Type.Optional(Bool) }, { additionalProperties: false });

/** The sandbox entity is a wire type the SDK reads too: defined once, in @beta9/protocol. */
export { SandboxSchema } from "@beta9/protocol";
