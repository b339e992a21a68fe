/** Row ↔ entity mapping and small helpers shared by the SQLite repositories. */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type {
  App, Deployment, Pool, StoredObject, Stub, StubType, Task, TaskStatus, Token, TokenType, Workspace,
} from "@beta9/protocol";
import type { TaskFilter } from "../types.js";

export const newId = (): string => randomUUID();
export const now = (): string => new Date().toISOString();

/** Token keys carry 192 random bits; only their sha256 is stored. */
export function newTokenKey(): string {
  return `b9_${randomBytes(24).toString("base64url")}`;
}
export function hashTokenKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}
export const TOKEN_PREFIX_LENGTH = 10;

export function isUniqueViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && "code" in err &&
    typeof err.code === "string" && (err.code.startsWith("SQLITE_CONSTRAINT_UNIQUE") || err.code.startsWith("SQLITE_CONSTRAINT_PRIMARYKEY"));
}

export interface WorkspaceRow { id: string; name: string; created_at: string }
export const toWorkspace = (r: WorkspaceRow): Workspace => ({ id: r.id, name: r.name, createdAt: r.created_at });

export interface TokenRow {
  id: string; workspace_id: string; type: string; name: string | null; prefix: string;
  active: number; created_at: string; revoked_at: string | null;
}
export const toToken = (r: TokenRow): Token => ({
  id: r.id, workspaceId: r.workspace_id, type: r.type as TokenType, name: r.name, prefix: r.prefix,
  active: r.active === 1, createdAt: r.created_at, revokedAt: r.revoked_at,
});

export interface AppRow { id: string; workspace_id: string; name: string; created_at: string }
export const toApp = (r: AppRow): App => ({ id: r.id, workspaceId: r.workspace_id, name: r.name, createdAt: r.created_at });

export interface ObjectRow { hash: string; size: number; created_at: string }
export const toObject = (r: ObjectRow): StoredObject => ({ hash: r.hash, size: r.size, createdAt: r.created_at });

export interface StubRow {
  id: string; workspace_id: string; app_id: string; name: string; type: string; object_id: string | null;
  config: string; config_hash: string; created_at: string;
}
export const toStub = (r: StubRow): Stub => ({
  id: r.id, workspaceId: r.workspace_id, appId: r.app_id, name: r.name, type: r.type as StubType,
  objectId: r.object_id, config: JSON.parse(r.config), configHash: r.config_hash, createdAt: r.created_at,
});

export interface DeploymentRow {
  id: string; workspace_id: string; app_id: string; stub_id: string; stub_type: string; name: string;
  version: number; active: number; created_at: string; updated_at: string;
}
export const toDeployment = (r: DeploymentRow): Deployment => ({
  id: r.id, workspaceId: r.workspace_id, appId: r.app_id, stubId: r.stub_id, stubType: r.stub_type,
  name: r.name, version: r.version, active: r.active === 1, createdAt: r.created_at, updatedAt: r.updated_at,
});

export interface TaskRow {
  id: string; workspace_id: string; stub_id: string; status: string; retries: number; max_retries: number; container_id: string | null;
  error: string | null; result: string | null; created_at: string; started_at: string | null; ended_at: string | null; expires_at: string | null;
  next_attempt_at: string | null;
  /** Joined in by the reads users see. */
  stub_name?: string | null;
}
export const toTask = (r: TaskRow): Task => ({
  id: r.id, workspaceId: r.workspace_id, stubId: r.stub_id, status: r.status as TaskStatus, retries: r.retries, maxRetries: r.max_retries,
  containerId: r.container_id, error: r.error, result: r.result === null ? null : JSON.parse(r.result), createdAt: r.created_at,
  startedAt: r.started_at, endedAt: r.ended_at, expiresAt: r.expires_at,
  nextAttemptAt: r.status === "RETRY" ? r.next_attempt_at : null,
  ...(typeof r.stub_name === "string" && { stubName: r.stub_name }),
});

export interface PoolRow { id: string; name: string; description: string; created_at: string }
export const toPool = (r: PoolRow): Pool => ({ id: r.id, name: r.name, description: r.description, createdAt: r.created_at });


/** An expired task's error: the TTL, and what its stub waited for when something is known (capacity). */
export function expiredError(waitedFor: string | undefined): string {
  return waitedFor ? `waited longer than its ttl; ${waitedFor}` : "waited longer than its ttl";
}

/**
 * The WHERE terms of a task listing, shared by both stores: `placeholder(n)` spells the n-th
 * parameter (`?` or `$n`). Each filter is one term the indexes serve: task_status_list for a
 * status, task_stub_list for a stub or a deployment's stubs (every version of the name).
 */
export function taskListWhere(workspaceId: string, filter: TaskFilter, placeholder: (n: number) => string, dialect: "sqlite" | "postgres"): { where: string[]; params: unknown[] } {
  const params: unknown[] = [];
  const p = (value: unknown) => {
    params.push(value);
    return placeholder(params.length);
  };
  // SQLite plans without statistics (no ANALYZE): given a workload, it would still walk the whole
  // workspace's history by task_workspace. The unary + keeps that index out of the choice there.
  const workload = filter.stubId !== undefined || filter.deployment !== undefined;
  const where = [`${workload && dialect === "sqlite" ? "+" : ""}task.workspace_id = ${p(workspaceId)}`];
  if (filter.status?.length) where.push(`task.status IN (${filter.status.map(p).join(", ")})`);
  if (filter.stubId !== undefined) where.push(`task.stub_id = ${p(filter.stubId)}`);
  if (filter.deployment !== undefined) {
    where.push(`task.stub_id IN (SELECT stub_id FROM deployment WHERE workspace_id = ${p(workspaceId)} AND name = ${p(filter.deployment)} AND deleted_at IS NULL)`);
  }
  return { where, params };
}
