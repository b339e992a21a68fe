/** Tasks, pools and machines on SQLite (the scheduler and machine issues extend these). */
import type Database from "better-sqlite3";
import { Beta9Error, type Task } from "@beta9/protocol";
import { RESUME_ELSEWHERE_AFTER_MS, type ClaimedTask, type Page, type PoolRepo, type TaskFilter, type TaskPolicy, type TaskRepo } from "../types.js";
import {
  expiredError, isUniqueViolation, newId, now, taskListWhere, toPool, toTask, type PoolRow, type TaskRow,
} from "./rows.js";
import { WriteBatch } from "./write-batch.js";

interface NewTaskRow {
  id: string; workspaceId: string; stubId: string; createdAt: string; input: string; maxRetries: number; timeout: number; expiresAt: string | null;
  /** Set: the task starts at once on this container (RUNNING). */
  containerId: string | null;
}
type FinishStatus = "COMPLETE" | "ERROR" | "TIMEOUT" | "CANCELLED" | "EXPIRED";

const TASK_COLUMNS = `id, workspace_id, stub_id, status, retries, max_retries, container_id, error, result, created_at,
  started_at, ended_at, expires_at, next_attempt_at`;
/** The columns with the stub's name joined in (reads users see: get and list show which workload). */
const TASK_WITH_STUB_NAME = `${TASK_COLUMNS.split(",").map((c) => `task.${c.trim()}`).join(", ")}, stub.name AS stub_name
  FROM task LEFT JOIN stub ON stub.id = task.stub_id`;

export class SqliteTaskRepo implements TaskRepo {
  private readonly stubExists;
  private readonly insert;
  private readonly insertRunning;
  private readonly byId;
  private readonly anyById;
  /** One prepared listing per filter shape (which fields are set, how many statuses): a handful. */
  private readonly listStmts = new Map<string, Database.Statement>();
  private readonly inputStmt;
  private readonly claim;
  private readonly inflightStmt;
  private readonly waitingStmt;
  private readonly finishStmt;
  private readonly retryStmt;
  private readonly releaseStmt;
  private readonly dueExpired;
  private readonly expireStmt;
  private readonly requeue;
  private readonly requeueExhausted;
  private readonly pendingStubs;
  // Group commits for the queue's hot writes (see write-batch.ts).
  private readonly creates: WriteBatch<NewTaskRow, void>;
  private readonly claims: WriteBatch<{ stubId: string; containerId: string }, ClaimedTask | undefined>;
  private readonly finishes: WriteBatch<{ id: string; status: FinishStatus; result: string | null; error: string | null }, boolean>;
  private readonly legacyRetries;

  constructor(private readonly db: Database.Database) {
    this.stubExists = db.prepare(`SELECT 1 FROM stub WHERE workspace_id = ? AND id = ?`);
    this.insert = db.prepare(
      `INSERT INTO task (id, workspace_id, stub_id, status, retries, created_at, input, max_retries, timeout_s, expires_at, next_attempt_at)
       VALUES (?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertRunning = db.prepare(
      `INSERT INTO task (id, workspace_id, stub_id, status, retries, created_at, started_at, container_id, input, max_retries, timeout_s, expires_at)
       VALUES (?, ?, ?, 'RUNNING', 0, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.byId = db.prepare(`SELECT ${TASK_WITH_STUB_NAME} WHERE task.workspace_id = ? AND task.id = ?`);
    this.anyById = db.prepare(`SELECT ${TASK_COLUMNS} FROM task WHERE id = ?`);
    this.inputStmt = db.prepare(`SELECT input FROM task WHERE id = ?`);
    // One statement per claim: the oldest due retry (older than any pending task), else the oldest
    // pending task, moved to RUNNING and handed back with its input. Each probe walks the
    // task_queue index in order (one probe with status IN (…) sorted every candidate: O(queue)).
    this.claim = db.prepare(
      `UPDATE task SET status = 'RUNNING', started_at = @ts, container_id = @containerId, next_attempt_at = NULL, resume_container = NULL
       WHERE id = COALESCE(
         (SELECT id FROM task WHERE stub_id = @stubId AND status = 'RETRY' AND resume_container = @containerId ORDER BY next_attempt_at LIMIT 1),
         (SELECT id FROM task WHERE stub_id = @stubId AND status = 'RETRY' AND next_attempt_at <= @ts ORDER BY next_attempt_at LIMIT 1),
         (SELECT id FROM task WHERE stub_id = @stubId AND status = 'PENDING' AND next_attempt_at IS NULL ORDER BY created_at LIMIT 1))
       RETURNING ${TASK_COLUMNS}, input`,
    );
    this.inflightStmt = db.prepare(`SELECT COUNT(*) AS n FROM task WHERE stub_id = ? AND status IN ('PENDING', 'RUNNING', 'RETRY')`);
    this.waitingStmt = db.prepare(`SELECT COUNT(*) AS n FROM task WHERE stub_id = ? AND status IN ('PENDING', 'RETRY')`);
    this.finishStmt = db.prepare(
      `UPDATE task SET status = @status, result = @result, error = @error, ended_at = @now, next_attempt_at = NULL WHERE id = @id AND status IN ('PENDING', 'RUNNING', 'RETRY')`,
    );
    this.retryStmt = db.prepare(
      `UPDATE task SET status = 'RETRY', retries = retries + @counted, error = @error, next_attempt_at = @at, resume_container = @resumeOn, container_id = NULL
       WHERE id = @id AND status = 'RUNNING'`,
    );
    this.releaseStmt = db.prepare(`UPDATE task SET resume_container = NULL, next_attempt_at = ? WHERE status = 'RETRY' AND resume_container = ? RETURNING stub_id`);
    this.dueExpired = db.prepare(`SELECT id, stub_id FROM task WHERE status = 'PENDING' AND expires_at IS NOT NULL AND expires_at <= ?`);
    this.expireStmt = db.prepare(
      `UPDATE task SET status = 'EXPIRED', error = ?, ended_at = ? WHERE id = ? AND status = 'PENDING'`,
    );
    // An attempt cut off by a gateway stop counts as an attempt, as one cut off by a worker's
    // death does: the handler may have run (delivery is at least once, and retry_count tells the
    // handler so). Within maxRetries it is RETRY, due now (its TTL no longer applies); past it, ERROR.
    this.requeueExhausted = db.prepare(
      `UPDATE task SET status = 'ERROR', retries = retries + 1, container_id = NULL, ended_at = ?,
       error = 'the gateway stopped during the attempt, and the task policy allows no more retries'
       WHERE status = 'RUNNING' AND retries + 1 > max_retries RETURNING id, stub_id`,
    );
    // Resumed on the container that ran it (its runner joins the handler or answers its kept
    // result); other containers take it only after RESUME_ELSEWHERE_AFTER_MS.
    this.requeue = db.prepare(
      `UPDATE task SET status = 'RETRY', retries = retries + 1, resume_container = container_id, container_id = NULL,
       next_attempt_at = CASE WHEN container_id IS NULL THEN @ts ELSE @elsewhere END,
       error = 'the gateway stopped during the attempt' WHERE status = 'RUNNING' RETURNING id, stub_id`,
    );
    // Data written before RETRY existed kept waiting retries as PENDING with a next attempt time.
    this.legacyRetries = db.prepare(`UPDATE task SET status = 'RETRY' WHERE status = 'PENDING' AND next_attempt_at IS NOT NULL`);
    this.pendingStubs = db.prepare(`SELECT DISTINCT stub_id FROM task WHERE status IN ('PENDING', 'RETRY')`);
    this.creates = new WriteBatch(db, (t) => {
      if (!this.stubExists.get(t.workspaceId, t.stubId)) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "stub", id: t.stubId });
      if (t.containerId === null) this.insert.run(t.id, t.workspaceId, t.stubId, t.createdAt, t.input, t.maxRetries, t.timeout, t.expiresAt, null);
      else this.insertRunning.run(t.id, t.workspaceId, t.stubId, t.createdAt, t.createdAt, t.containerId, t.input, t.maxRetries, t.timeout, t.expiresAt);
    });
    this.claims = new WriteBatch(db, ({ stubId, containerId }) => {
      const row = this.claim.get({ ts: now(), containerId, stubId }) as (TaskRow & { input: string | null }) | undefined;
      if (!row) return undefined;
      const task: ClaimedTask = toTask(row);
      task.inputJson = row.input ?? "null";
      return task;
    });
    this.finishes = new WriteBatch(db, (f) => this.finishStmt.run({ ...f, now: now() }).changes === 1);
  }

  async create(workspaceId: string, stubId: string, input?: unknown, policy?: TaskPolicy, claim?: { containerId: string }): Promise<ClaimedTask> {
    const id = newId();
    const createdAt = now();
    const expiresAt = policy ? new Date(Date.now() + policy.ttl * 1000).toISOString() : null;
    const maxRetries = policy?.maxRetries ?? 0;
    const containerId = claim?.containerId ?? null;
    const inputJson = JSON.stringify(input ?? null);
    await this.creates.run({ id, workspaceId, stubId, createdAt, input: inputJson, maxRetries, timeout: policy?.timeout ?? -1, expiresAt, containerId });
    // The row as written, without reading it back (puts are the hot path of a queue).
    const task: ClaimedTask = toTask({
      id, workspace_id: workspaceId, stub_id: stubId, status: containerId === null ? "PENDING" : "RUNNING", retries: 0, max_retries: maxRetries,
      container_id: containerId, error: null, result: null, created_at: createdAt, started_at: containerId === null ? null : createdAt, ended_at: null,
      expires_at: expiresAt, next_attempt_at: null,
    });
    if (containerId !== null) task.inputJson = inputJson;
    return task;
  }

  async get(workspaceId: string, id: string) {
    const row = this.byId.get(workspaceId, id) as TaskRow | undefined;
    return row && toTask(row);
  }

  async getAny(id: string) {
    const row = this.anyById.get(id) as TaskRow | undefined;
    return row && toTask(row);
  }

  async list(workspaceId: string, filter: TaskFilter) {
    const { where, params } = taskListWhere(workspaceId, filter, () => "?", "sqlite");
    const shape = where.join(" AND ");
    let stmt = this.listStmts.get(shape);
    if (!stmt) {
      stmt = this.db.prepare(`SELECT ${TASK_WITH_STUB_NAME} WHERE ${shape} ORDER BY task.created_at DESC, task.id LIMIT ? OFFSET ?`);
      this.listStmts.set(shape, stmt);
    }
    return (stmt.all(...params, filter.limit, filter.offset) as TaskRow[]).map(toTask);
  }

  async input(id: string) {
    const row = this.inputStmt.get(id) as { input: string | null } | undefined;
    return row?.input ? JSON.parse(row.input) : null;
  }

  async claimNext(stubId: string, containerId: string) {
    return this.claims.run({ stubId, containerId });
  }

  async inflight(stubId: string) {
    return (this.inflightStmt.get(stubId) as { n: number }).n;
  }

  async waiting(stubId: string) {
    return (this.waitingStmt.get(stubId) as { n: number }).n;
  }

  /** One gateway owns the data dir: nobody else queues. */
  readonly shared = false;

  onQueuedElsewhere(): () => void {
    return () => {};
  }

  onEndedElsewhere(): () => void {
    return () => {};
  }

  async finish(id: string, status: FinishStatus, fields: { result?: unknown; error?: string } = {}) {
    return this.finishes.run({ id, status, result: fields.result === undefined ? null : JSON.stringify(fields.result), error: fields.error ?? null });
  }

  async retry(id: string, error: string, delayMs: number, options: { resumeOn?: string; uncounted?: boolean } = {}) {
    const wait = options.resumeOn === undefined ? delayMs : Math.max(delayMs, RESUME_ELSEWHERE_AFTER_MS);
    return this.retryStmt.run({
      id, error, at: new Date(Date.now() + wait).toISOString(), resumeOn: options.resumeOn ?? null, counted: options.uncounted ? 0 : 1,
    }).changes === 1;
  }

  async releaseResumes(containerId: string) {
    return [...new Set((this.releaseStmt.all(now(), containerId) as { stub_id: string }[]).map((r) => r.stub_id))];
  }

  async expireDue(waitedFor?: (stubId: string) => string | undefined) {
    return this.db.transaction(() => {
      const ts = now();
      const due = this.dueExpired.all(ts) as { id: string; stub_id: string }[];
      for (const t of due) this.expireStmt.run(expiredError(waitedFor?.(t.stub_id)), ts, t.id);
      return due.map((t) => ({ id: t.id, stubId: t.stub_id }));
    })();
  }

  async requeueRunning() {
    return this.db.transaction(() => {
      this.legacyRetries.run();
      const ts = now();
      const rows = (status: "ERROR" | "RETRY", found: unknown[]) => (found as { id: string; stub_id: string }[]).map((r) => ({ id: r.id, stubId: r.stub_id, status }));
      return [
        ...rows("ERROR", this.requeueExhausted.all(ts)),
        ...rows("RETRY", this.requeue.all({ ts, elsewhere: new Date(Date.now() + RESUME_ELSEWHERE_AFTER_MS).toISOString() })),
      ];
    })();
  }

  /** One gateway owns a SQLite store: no attempt is another's. */
  async requeueOrphaned() {
    return [];
  }

  async stubsWithPending() {
    return (this.pendingStubs.all() as { stub_id: string }[]).map((r) => r.stub_id);
  }
}

export class SqlitePoolRepo implements PoolRepo {
  private readonly insert;
  private readonly byName;
  private readonly listStmt;

  constructor(db: Database.Database) {
    this.insert = db.prepare(`INSERT INTO pool (id, name, description, created_at) VALUES (?, ?, ?, ?)`);
    this.byName = db.prepare(`SELECT * FROM pool WHERE name = ?`);
    this.listStmt = db.prepare(`SELECT * FROM pool ORDER BY name LIMIT ? OFFSET ?`);
  }

  async create(name: string, description: string) {
    const row: PoolRow = { id: newId(), name, description, created_at: now() };
    try {
      this.insert.run(row.id, row.name, row.description, row.created_at);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("NAME_TAKEN", { kind: "pool", name });
      throw err;
    }
    return toPool(row);
  }

  async getByName(name: string) {
    const row = this.byName.get(name) as PoolRow | undefined;
    return row && toPool(row);
  }

  async list(page: Page) {
    return (this.listStmt.all(page.limit, page.offset) as PoolRow[]).map(toPool);
  }
}
