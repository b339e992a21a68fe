/**
 * Tasks and pools on Postgres. Every queue operation is one statement, atomic on its own, so
 * several gateways can put, claim and finish tasks of the same stub at once. No group commit (the
 * SQLite store batches writes of one event-loop turn into one transaction): here each statement
 * is its own short transaction and concurrency comes from the connection pool.
 */
import { Beta9Error } from "@beta9/protocol";
import { RESUME_ELSEWHERE_AFTER_MS, type ClaimedTask, type Page, type PoolRepo, type TaskFilter, type TaskPolicy, type TaskRepo } from "../types.js";
import { expiredError, newId, now, taskListWhere, toPool, toTask, type PoolRow, type TaskRow } from "../sqlite/rows.js";
import { isUniqueViolation, type Db } from "./db.js";
import { GroupCommit } from "./group-commit.js";
import { noticeIds, Notices } from "./notices.js";

/** A put's columns, in the INSERT's order: id, workspace, stub, status, created, started, container, input, maxRetries, timeout, expires, gateway. */
type CreateRow = [string, string, string, string, string, string | null, string | null, string, number, number, string | null, string | null];
/** An end's columns: id, status, result (JSON text), error, ended_at. */
type FinishRow = [string, string, string | null, string | null, string];

type FinishStatus = "COMPLETE" | "ERROR" | "TIMEOUT" | "CANCELLED" | "EXPIRED";

/** Task rows in the SQLite row shape (the result as JSON text). */
const TASK_COLUMNS = `id, workspace_id, stub_id, status, retries, max_retries, container_id, error, result::text AS result, created_at,
  started_at, ended_at, expires_at, next_attempt_at`;
const TASK_WITH_STUB_NAME = `${TASK_COLUMNS.split(",").map((c) => `task.${c.trim()}`).join(", ")}, stub.name AS stub_name
  FROM task LEFT JOIN stub ON stub.id = task.stub_id`;

/** Who this gateway is to the others on the database, and whether they can tell (store.ts keeps the heartbeat). */
export interface GatewayPresence {
  readonly id: string;
  /** How long a gateway unseen counts as gone (its running attempts are re-queued by the others). */
  readonly staleAfterMs: number;
  /** Whether this gateway's own heartbeat has been written without a failure for at least `staleAfterMs`. */
  steady(): boolean;
}

/** NOTIFY channel of queued tasks: payload `<gateway id> <stub id>`. */
export const TASK_QUEUED_CHANNEL = "beta9_task_queued";
/** NOTIFY channel of ended tasks: payload `<gateway id> <task id>`. */
export const TASK_ENDED_CHANNEL = "beta9_task_ended";

export class PostgresTaskRepo implements TaskRepo {
  readonly shared = true;
  private readonly queuedListeners = new Set<(stubId: string) => void>();
  private readonly endedListeners = new Set<(taskId: string) => void>();

  private readonly notices: Notices;

  /** Puts in group commits: the stub check and the insert in one statement (nothing is written for a foreign or unknown stub). */
  private readonly creates = new GroupCommit<CreateRow, boolean>(async (rows) => {
    const columns = rows[0]!.map((_, c) => rows.map((r) => r[c]));
    const inserted = new Set((await this.db.rows<{ id: string }>(
      `INSERT INTO task (id, workspace_id, stub_id, status, retries, created_at, started_at, container_id, input, max_retries, timeout_s, expires_at, gateway_id)
       SELECT v.id, v.ws, v.stub, v.status, 0, v.created_at::timestamptz, v.started_at::timestamptz, v.container_id, v.input::json, v.max_retries, v.timeout_s,
         v.expires_at::timestamptz, v.gateway_id
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::int[], $11::text[], $12::text[])
         WITH ORDINALITY AS v(id, ws, stub, status, created_at, started_at, container_id, input, max_retries, timeout_s, expires_at, gateway_id, n)
       WHERE EXISTS (SELECT 1 FROM stub WHERE stub.workspace_id = v.ws AND stub.id = v.stub)
       ORDER BY v.n
       RETURNING id`, columns,
    )).map((r) => r.id));
    return rows.map((r) => inserted.has(r[0]));
  });

  /**
   * Ends in group commits. An attempt's outcome lands only while the attempt is still this
   * gateway's (or no gateway's); a cancel lands whoever runs it. A task ended twice in one batch
   * (a cancel racing an outcome) is written one statement at a time, so exactly one of them lands.
   */
  private readonly finishes = new GroupCommit<FinishRow, boolean>(async (rows) => {
    if (new Set(rows.map((r) => r[0])).size < rows.length) {
      const out: boolean[] = [];
      for (const row of rows) out.push((await this.finishRows([row])).has(row[0]));
      return out;
    }
    const ended = await this.finishRows(rows);
    return rows.map((r) => ended.has(r[0]));
  });

  constructor(private readonly db: Db, private readonly presence: GatewayPresence) {
    this.notices = new Notices(db, presence.id);
  }

  private async finishRows(rows: FinishRow[]): Promise<Set<string>> {
    const columns = rows[0]!.map((_, c) => rows.map((r) => r[c]));
    return new Set((await this.db.rows<{ id: string }>(
      `UPDATE task SET status = v.status, result = v.result::json, error = v.error, ended_at = v.ended_at::timestamptz, next_attempt_at = NULL
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS v(id, status, result, error, ended_at)
       WHERE task.id = v.id AND (task.status IN ('PENDING', 'RETRY')
         OR (task.status = 'RUNNING' AND (v.status = 'CANCELLED' OR task.gateway_id IS NULL OR task.gateway_id = $6)))
       RETURNING task.id`, [...columns, this.presence.id],
    )).map((r) => r.id));
  }

  /** Sends the notices not sent yet (the store's close). */
  flushNotices(): Promise<void> {
    return this.notices.flush();
  }

  onQueuedElsewhere(listener: (stubId: string) => void): () => void {
    this.queuedListeners.add(listener);
    return () => this.queuedListeners.delete(listener);
  }

  onEndedElsewhere(listener: (taskId: string) => void): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  /** A TASK_QUEUED_CHANNEL or TASK_ENDED_CHANNEL notification (store.ts's listener); this gateway's own are ignored. */
  notified(channel: string, payload: string): void {
    const listeners = channel === TASK_ENDED_CHANNEL ? this.endedListeners : this.queuedListeners;
    for (const id of noticeIds(payload, this.presence.id)) for (const listener of listeners) listener(id);
  }

  async waiting(stubId: string) {
    return (await this.db.row<{ n: number }>(`SELECT COUNT(*) AS n FROM task WHERE stub_id = $1 AND status IN ('PENDING', 'RETRY')`, [stubId]))!.n;
  }

  async create(workspaceId: string, stubId: string, input?: unknown, policy?: TaskPolicy, claim?: { containerId: string }): Promise<ClaimedTask> {
    const id = newId();
    const createdAt = now();
    const expiresAt = policy ? new Date(Date.now() + policy.ttl * 1000).toISOString() : null;
    const maxRetries = policy?.maxRetries ?? 0;
    const containerId = claim?.containerId ?? null;
    const inputJson = JSON.stringify(input ?? null);
    const status = containerId === null ? "PENDING" : "RUNNING";
    const inserted = await this.creates.run([id, workspaceId, stubId, status, createdAt, containerId === null ? null : createdAt, containerId, inputJson,
      maxRetries, policy?.timeout ?? -1, expiresAt, containerId === null ? null : this.presence.id]);
    // Queued: a gateway whose workers can run it may be another than this one (notices.ts).
    if (inserted && containerId === null) this.notices.add(TASK_QUEUED_CHANNEL, stubId);
    if (!inserted) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "stub", id: stubId });
    // The row as written, without reading it back (puts are the hot path of a queue).
    const task: ClaimedTask = toTask({
      id, workspace_id: workspaceId, stub_id: stubId, status, retries: 0, max_retries: maxRetries,
      container_id: containerId, error: null, result: null, created_at: createdAt, started_at: containerId === null ? null : createdAt, ended_at: null,
      expires_at: expiresAt, next_attempt_at: null,
    });
    if (containerId !== null) task.inputJson = inputJson;
    return task;
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<TaskRow>(`SELECT ${TASK_WITH_STUB_NAME} WHERE task.workspace_id = $1 AND task.id = $2`, [workspaceId, id]);
    return row && toTask(row);
  }

  async getAny(id: string) {
    const row = await this.db.row<TaskRow>(`SELECT ${TASK_COLUMNS} FROM task WHERE id = $1`, [id]);
    return row && toTask(row);
  }

  async list(workspaceId: string, filter: TaskFilter) {
    const { where, params } = taskListWhere(workspaceId, filter, (n) => `$${n}`, "postgres");
    const n = params.length;
    const rows = await this.db.rows<TaskRow>(`SELECT ${TASK_WITH_STUB_NAME} WHERE ${where.join(" AND ")} ORDER BY task.created_at DESC, task.id LIMIT $${n + 1} OFFSET $${n + 2}`,
      [...params, filter.limit, filter.offset]);
    return rows.map(toTask);
  }

  async input(id: string) {
    const row = await this.db.row<{ input: string | null }>(`SELECT input::text AS input FROM task WHERE id = $1`, [id]);
    return row?.input ? JSON.parse(row.input) : null;
  }

  /**
   * One statement: the oldest due retry (older than any pending task), else the oldest pending
   * task, locked with SKIP LOCKED so that gateways claiming at the same moment each take a
   * different row instead of queueing behind one; a row another claim committed meanwhile fails
   * the status re-check and is skipped. The input comes back as stored (json keeps its text).
   */
  async claimNext(stubId: string, containerId: string) {
    const row = await this.db.row<TaskRow & { input: string | null }>(
      `UPDATE task SET status = 'RUNNING', started_at = $1, container_id = $2, next_attempt_at = NULL, gateway_id = $4, resume_container = NULL
       WHERE status IN ('PENDING', 'RETRY') AND id = COALESCE(
         (SELECT id FROM task WHERE stub_id = $3 AND status = 'RETRY' AND resume_container = $2
           ORDER BY next_attempt_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED),
         (SELECT id FROM task WHERE stub_id = $3 AND status = 'RETRY' AND next_attempt_at <= $1
           ORDER BY next_attempt_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED),
         (SELECT id FROM task WHERE stub_id = $3 AND status = 'PENDING' ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED))
       RETURNING ${TASK_COLUMNS}, input::text AS input`,
      [now(), containerId, stubId, this.presence.id],
    );
    if (!row) return undefined;
    const task: ClaimedTask = toTask(row);
    task.inputJson = row.input ?? "null";
    return task;
  }

  async inflight(stubId: string) {
    return (await this.db.row<{ n: number }>(`SELECT COUNT(*) AS n FROM task WHERE stub_id = $1 AND status IN ('PENDING', 'RUNNING', 'RETRY')`, [stubId]))!.n;
  }

  /**
   * An attempt's outcome lands only while the attempt is still this gateway's (or no gateway's): a
   * gateway presumed gone whose attempt ends after another took the task over does not overwrite
   * the other's attempt. A cancel lands whoever runs it.
   */
  async finish(id: string, status: FinishStatus, fields: { result?: unknown; error?: string } = {}) {
    const ended = await this.finishes.run([id, status, fields.result === undefined ? null : JSON.stringify(fields.result), fields.error ?? null, now()]);
    // A caller may wait for it on another gateway (a function call, a follower).
    if (ended) this.notices.add(TASK_ENDED_CHANNEL, id);
    return ended;
  }

  async retry(id: string, error: string, delayMs: number, options: { resumeOn?: string; uncounted?: boolean } = {}) {
    const wait = options.resumeOn === undefined ? delayMs : Math.max(delayMs, RESUME_ELSEWHERE_AFTER_MS);
    return await this.db.run(
      `UPDATE task SET status = 'RETRY', retries = retries + $5, error = $1, next_attempt_at = $2, resume_container = $6, container_id = NULL
       WHERE id = $3 AND status = 'RUNNING' AND (gateway_id IS NULL OR gateway_id = $4)`,
      [error, new Date(Date.now() + wait).toISOString(), id, this.presence.id, options.uncounted ? 0 : 1, options.resumeOn ?? null],
    ) === 1;
  }

  async releaseResumes(containerId: string) {
    const rows = await this.db.rows<{ stub_id: string }>(
      `UPDATE task SET resume_container = NULL, next_attempt_at = $1 WHERE status = 'RETRY' AND resume_container = $2 RETURNING stub_id`, [now(), containerId],
    );
    return [...new Set(rows.map((r) => r.stub_id))];
  }

  async expireDue(waitedFor?: (stubId: string) => string | undefined) {
    const ts = now();
    // Each stub's error, worked out before the one UPDATE that expires (so another gateway's sweep
    // cannot expire a task twice); a stub that starts waiting in between keeps the plain message.
    const stubs = waitedFor
      ? await this.db.rows<{ stub_id: string }>(
        `SELECT DISTINCT stub_id FROM task WHERE status = 'PENDING' AND expires_at IS NOT NULL AND expires_at <= $1`, [ts])
      : [];
    const errors = Object.fromEntries(stubs.map((s) => [s.stub_id, expiredError(waitedFor?.(s.stub_id))]));
    const rows = await this.db.rows<{ id: string; stub_id: string }>(
      `UPDATE task SET status = 'EXPIRED', error = COALESCE($2::jsonb ->> stub_id, $3), ended_at = $1
       WHERE status = 'PENDING' AND expires_at IS NOT NULL AND expires_at <= $1 RETURNING id, stub_id`,
      [ts, JSON.stringify(errors), expiredError(undefined)],
    );
    return rows.map((t) => ({ id: t.id, stubId: t.stub_id }));
  }

  /**
   * As in the SQLite store: an attempt cut off by a gateway stop counts as an attempt. Only this
   * gateway's own attempts (it is back under the same id: the data dir's) and attempts no gateway
   * recorded: other gateways' go on untouched, and those of gateways gone are `requeueOrphaned`'s
   * (right after a database outage every heartbeat looks old; that one waits until they can be seen).
   */
  requeueRunning() {
    return this.requeue("(gateway_id IS NULL OR gateway_id = $3)", [this.presence.id], "the gateway stopped during the attempt");
  }

  async requeueOrphaned() {
    if (!this.presence.steady()) return [];
    // Heartbeats are judged by the database's clock, which wrote them: gateways' clocks may differ.
    return this.requeue(
      "gateway_id IS DISTINCT FROM $3 AND (gateway_id IS NULL OR gateway_id NOT IN (SELECT id FROM gateway WHERE seen_at > now() - $4::int * interval '1 millisecond'))",
      [this.presence.id, this.presence.staleAfterMs], "the gateway running the attempt stopped or lost the database",
    );
  }

  /**
   * RUNNING tasks matching `owners` (its parameters from $3) become RETRY, or ERROR past their
   * maxRetries. A retry is first offered to the container that ran the attempt (RESUME_ELSEWHERE_AFTER_MS).
   */
  private requeue(owners: string, ownerParams: unknown[], why: string) {
    return this.db.tx(async (q) => {
      const params = [now(), why, ...ownerParams];
      const elsewhere = new Date(Date.now() + RESUME_ELSEWHERE_AFTER_MS).toISOString();
      const exhausted = await q.rows<{ id: string; stub_id: string }>(
        `UPDATE task SET status = 'ERROR', retries = retries + 1, container_id = NULL, gateway_id = NULL, ended_at = $1,
         error = $2::text || ', and the task policy allows no more retries'
         WHERE status = 'RUNNING' AND retries + 1 > max_retries AND ${owners} RETURNING id, stub_id`, params,
      );
      const requeued = await q.rows<{ id: string; stub_id: string }>(
        `UPDATE task SET status = 'RETRY', retries = retries + 1, resume_container = container_id, container_id = NULL, gateway_id = NULL,
         next_attempt_at = CASE WHEN container_id IS NULL THEN $1 ELSE $${params.length + 1}::timestamptz END, error = $2::text
         WHERE status = 'RUNNING' AND ${owners} RETURNING id, stub_id`, [...params, elsewhere],
      );
      return [
        ...exhausted.map((r) => ({ id: r.id, stubId: r.stub_id, status: "ERROR" as const })),
        ...requeued.map((r) => ({ id: r.id, stubId: r.stub_id, status: "RETRY" as const })),
      ];
    });
  }

  async stubsWithPending() {
    return (await this.db.rows<{ stub_id: string }>(`SELECT DISTINCT stub_id FROM task WHERE status IN ('PENDING', 'RETRY')`)).map((r) => r.stub_id);
  }
}

export class PostgresPoolRepo implements PoolRepo {
  constructor(private readonly db: Db) {}

  async create(name: string, description: string) {
    const row: PoolRow = { id: newId(), name, description, created_at: now() };
    try {
      await this.db.run(`INSERT INTO pool (id, name, description, created_at) VALUES ($1, $2, $3, $4)`, [row.id, name, description, row.created_at]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Beta9Error("NAME_TAKEN", { kind: "pool", name });
      throw err;
    }
    return toPool(row);
  }

  async getByName(name: string) {
    const row = await this.db.row<PoolRow>(`SELECT * FROM pool WHERE name = $1`, [name]);
    return row && toPool(row);
  }

  async list(page: Page) {
    return (await this.db.rows<PoolRow>(`SELECT * FROM pool ORDER BY name LIMIT $1 OFFSET $2`, [page.limit, page.offset])).map(toPool);
  }
}
