/**
 * Request shapes of the HTTP API (bodies, params, queries). The gateway validates against these
 * schemas, the OpenAPI document is generated from them, and the SDK's client types come from them.
 */
import { Type, type Static } from "@sinclair/typebox";
import { STUB_TYPES, StringEnum, TASK_STATUSES, TOKEN_TYPES } from "./entities.js";
import { ImageSpecSchema } from "./image-spec.js";
import { StubConfigInputSchema } from "./stub-config.js";

export const API_PREFIX = "/api/v1";
export const DEFAULT_GATEWAY_PORT = 1994;

/** Lowercase DNS-label-like names: what users type for workspaces, apps, deployments, pools. */
export const NameSchema = Type.String({
  pattern: "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$",
  description: "lowercase letters, digits, '.', '_' or '-'; 1–63 characters; starts and ends with a letter or digit",
});

export const Sha256Schema = Type.String({ pattern: "^[a-f0-9]{64}$", description: "sha256, lowercase hex" });

export const IdParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false });
export const HashParamsSchema = Type.Object({ hash: Sha256Schema }, { additionalProperties: false });

const QueryInt = Type.String({ pattern: "^[0-9]{1,9}$" });
const QueryBool = StringEnum(["true", "false"] as const);

export const ListQuerySchema = Type.Object(
  {
    limit: Type.Optional(QueryInt),
    offset: Type.Optional(QueryInt),
  },
  { additionalProperties: false },
);

export const DeploymentListQuerySchema = Type.Object(
  {
    limit: Type.Optional(QueryInt),
    offset: Type.Optional(QueryInt),
    name: Type.Optional(NameSchema),
    active: Type.Optional(QueryBool),
  },
  { additionalProperties: false },
);
export type DeploymentListQuery = Static<typeof DeploymentListQuerySchema>;

const TASK_STATUS_RE = `(${TASK_STATUSES.join("|")})`;
/**
 * `GET /task` filters, applied by the store (indexed): one status or several (comma-separated),
 * and one workload, named either by stub id or by deployment name (every version of it); not both.
 */
export const TaskListQuerySchema = Type.Object(
  {
    limit: Type.Optional(QueryInt),
    offset: Type.Optional(QueryInt),
    status: Type.Optional(Type.String({ pattern: `^${TASK_STATUS_RE}(,${TASK_STATUS_RE})*$`, maxLength: 256, description: `one or more of ${TASK_STATUSES.join(", ")}, comma-separated` })),
    stub: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "a stub id: its tasks only" })),
    deployment: Type.Optional(NameSchema),
  },
  { additionalProperties: false },
);
export type TaskListQuery = Static<typeof TaskListQuerySchema>;

export const CreateWorkspaceBodySchema = Type.Object({ name: NameSchema }, { additionalProperties: false });
export type CreateWorkspaceBody = Static<typeof CreateWorkspaceBodySchema>;

export const CreateTokenBodySchema = Type.Object(
  {
    type: StringEnum(TOKEN_TYPES),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type CreateTokenBody = Static<typeof CreateTokenBodySchema>;

export const CreateStubBodySchema = Type.Object(
  {
    name: NameSchema,
    type: StringEnum(STUB_TYPES),
    app: Type.Optional(NameSchema),
    objectId: Type.Optional(Sha256Schema),
    config: Type.Optional(StubConfigInputSchema),
  },
  { additionalProperties: false },
);
export type CreateStubBody = Static<typeof CreateStubBodySchema>;

export const CreateDeploymentBodySchema = Type.Object(
  {
    stubId: Type.String({ minLength: 1, maxLength: 128 }),
    name: Type.Optional(NameSchema),
  },
  { additionalProperties: false },
);
export type CreateDeploymentBody = Static<typeof CreateDeploymentBodySchema>;

/** A secret's name is the environment variable it becomes. */
export const SecretNameSchema = Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", minLength: 1, maxLength: 256 });
export const MAX_SECRET_BYTES = 65_536;
export const CreateSecretBodySchema = Type.Object(
  { name: SecretNameSchema, value: Type.String({ maxLength: MAX_SECRET_BYTES }) },
  { additionalProperties: false },
);
export type CreateSecretBody = Static<typeof CreateSecretBodySchema>;
export const UpdateSecretBodySchema = Type.Object({ value: Type.String({ maxLength: MAX_SECRET_BYTES }) }, { additionalProperties: false });
export type UpdateSecretBody = Static<typeof UpdateSecretBodySchema>;
export const SecretParamsSchema = Type.Object({ name: SecretNameSchema });

export const CreatePoolBodySchema = Type.Object(
  { name: NameSchema, description: Type.Optional(Type.String({ maxLength: 1024 })) },
  { additionalProperties: false },
);
export type CreatePoolBody = Static<typeof CreatePoolBodySchema>;

export const ListOf = <T extends Parameters<typeof Type.Array>[0]>(item: T) => Type.Object({ items: Type.Array(item) });

export const RunContainerBodySchema = Type.Object(
  {
    command: Type.Array(Type.String({ maxLength: 65_536 }), { minItems: 1, maxItems: 4096 }),
    env: Type.Optional(Type.Record(Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$", maxLength: 256 }), Type.String({ maxLength: 65_536 }))),
    cpu: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
    memory: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 32 })])),
    gpu: Type.Optional(Type.Union([Type.String({ maxLength: 32 }), Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 })])),
    gpuCount: Type.Optional(Type.Integer({ minimum: 0, maximum: 8 })),
    ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65_535 }), { maxItems: 32 })),
    imageId: Type.Optional(Type.String({ pattern: "^[a-f0-9]{16,64}$" })),
    pool: Type.Optional(NameSchema),
  },
  { additionalProperties: false },
);
export type RunContainerBody = Static<typeof RunContainerBodySchema>;

export const ContainerListQuerySchema = Type.Object(
  { active: Type.Optional(StringEnum(["true", "false"] as const)) },
  { additionalProperties: false },
);

export const ContainerLogsQuerySchema = Type.Object(
  { follow: Type.Optional(StringEnum(["true", "false"] as const)) },
  { additionalProperties: false },
);

export const BuildImageBodySchema = Type.Object({ spec: ImageSpecSchema }, { additionalProperties: false });
export type BuildImageBody = Static<typeof BuildImageBodySchema>;
export const ImageIdParamsSchema = Type.Object({ id: Type.String({ pattern: "^[a-f0-9]{32}$" }) }, { additionalProperties: false });
