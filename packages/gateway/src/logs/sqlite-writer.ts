/**
 * The write side of the SQLite log store (sqlite.ts): the schema, chunk inserts with each
 * container's byte bound, and retention. It runs on a thread of its own (the bottom of this file)
 * so that a log flood's inserts, deletes and WAL checkpoints, which block, never block the
 * gateway's event loop; for an in-memory database (tests) it runs inline on the caller's.
 */
import Database from "better-sqlite3";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { LogRetention, PruneResult } from "./types.js";

const SCHEMA_VERSION = 1;
/** A container over its bound is cut to this share of it, so cutting happens once per 20 % of growth, not per flush. */
const TRIM_TO = 0.8;

/** A run of one container's lines with consecutive seqs, encoded (sqlite.ts). */
export interface ChunkIn {
  containerId: string;
  workspaceId: string;
  stubId: string | null;
  seq: number;
  lines: number;
  /** Characters of its lines' text (the sender's memory bound counts them until committed). */
  chars: number;
  bytes: number;
  tasks: string[];
  body: string;
}

export function openLogDatabase(path: string): Database.Database {
  const db = new Database(path);
  try {
    // As the main store: a committed flush survives a process crash; a power loss may drop the last ones.
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("journal_size_limit = 67108864");
    db.pragma("busy_timeout = 5000");
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

function migrate(db: Database.Database): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > SCHEMA_VERSION) throw new Error(`logs.db has schema ${version}, newer than this gateway's ${SCHEMA_VERSION}; upgrade the gateway or remove logs.db`);
  if (version === SCHEMA_VERSION) return;
  db.exec(`
    CREATE TABLE log_stubs (id INTEGER PRIMARY KEY, stub_id TEXT NOT NULL UNIQUE);
    CREATE TABLE log_sources (
      id INTEGER PRIMARY KEY, container_id TEXT NOT NULL UNIQUE, workspace_id TEXT NOT NULL, stub INTEGER,
      bytes INTEGER NOT NULL DEFAULT 0, last_at INTEGER NOT NULL
    );
    CREATE TABLE log_chunks (
      id INTEGER PRIMARY KEY, source INTEGER NOT NULL, stub INTEGER, seq INTEGER NOT NULL, seq_last INTEGER NOT NULL,
      lines INTEGER NOT NULL, bytes INTEGER NOT NULL, written_at INTEGER NOT NULL, tasks INTEGER NOT NULL, body TEXT NOT NULL
    );
    -- Each index also orders by id (the rowid), which is seq order: "the last N lines of X" is one range read.
    CREATE INDEX log_chunks_source ON log_chunks(source);
    CREATE INDEX log_chunks_stub ON log_chunks(stub) WHERE stub IS NOT NULL;
    CREATE INDEX log_chunks_written ON log_chunks(written_at);
    CREATE TABLE log_chunk_tasks (chunk INTEGER NOT NULL, task_id TEXT NOT NULL, PRIMARY KEY (chunk, task_id)) WITHOUT ROWID;
    CREATE INDEX log_chunk_tasks_task ON log_chunk_tasks(task_id, chunk);
    CREATE TRIGGER log_chunks_untask AFTER DELETE ON log_chunks WHEN old.tasks > 0 BEGIN
      DELETE FROM log_chunk_tasks WHERE chunk = old.id;
    END;
    PRAGMA user_version = ${SCHEMA_VERSION};
  `);
}

interface Source {
  id: number;
  stubKey: number | null;
  bytes: number;
}

interface ChunkRef {
  id: number;
  source: number;
  bytes: number;
  lines: number;
}

export class LogWriter {
  private readonly sources = new Map<string, Source>();
  private readonly stubKeys = new Map<string, number>();
  private readonly stmt;
  private readonly writeAll: Database.Transaction<(chunks: ChunkIn[], now: number) => number>;
  private readonly dropChunks: Database.Transaction<(rows: ChunkRef[]) => number>;

  constructor(private readonly db: Database.Database, private readonly retention: LogRetention) {
    this.stmt = {
      insertChunk: db.prepare(`INSERT INTO log_chunks (source, stub, seq, seq_last, lines, bytes, written_at, tasks, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      insertTask: db.prepare(`INSERT OR IGNORE INTO log_chunk_tasks (chunk, task_id) VALUES (?, ?)`),
      touchSource: db.prepare(`UPDATE log_sources SET bytes = ?, last_at = ? WHERE id = ?`),
      getSource: db.prepare(`SELECT id, stub, bytes FROM log_sources WHERE container_id = ?`),
      addSource: db.prepare(`INSERT INTO log_sources (container_id, workspace_id, stub, last_at) VALUES (?, ?, ?, ?)`),
      getStub: db.prepare(`SELECT id FROM log_stubs WHERE stub_id = ?`),
      addStub: db.prepare(`INSERT INTO log_stubs (stub_id) VALUES (?)`),
      oldest: db.prepare(`SELECT id, bytes, lines FROM log_chunks WHERE source = ? ORDER BY id`),
      deleteUpTo: db.prepare(`DELETE FROM log_chunks WHERE source = ? AND id <= ?`),
      deleteChunk: db.prepare(`DELETE FROM log_chunks WHERE id = ?`),
      setBytes: db.prepare(`UPDATE log_sources SET bytes = ? WHERE id = ?`),
      subtract: db.prepare(`UPDATE log_sources SET bytes = MAX(0, bytes - ?) WHERE id = ? RETURNING container_id, bytes`),
      anyChunk: db.prepare(`SELECT 1 FROM log_chunks WHERE source = ? LIMIT 1`),
      deleteSource: db.prepare(`DELETE FROM log_sources WHERE id = ?`),
      total: db.prepare(`SELECT COALESCE(SUM(bytes), 0) AS total FROM log_sources`),
      expired: db.prepare(`SELECT id, source, bytes, lines FROM log_chunks WHERE written_at < ? ORDER BY written_at, id LIMIT 500`),
      first: db.prepare(`SELECT id, source, bytes, lines FROM log_chunks ORDER BY id LIMIT 500`),
    };
    this.writeAll = db.transaction((chunks: ChunkIn[], now: number) => {
      let trimmed = 0;
      const touched = new Set<Source>();
      for (const c of chunks) {
        const s = this.sourceOf(c, now);
        const id = this.stmt.insertChunk.run(s.id, s.stubKey, c.seq, c.seq + c.lines - 1, c.lines, c.bytes, now, c.tasks.length, c.body).lastInsertRowid;
        for (const task of c.tasks) this.stmt.insertTask.run(id, task);
        s.bytes += c.bytes;
        touched.add(s);
      }
      for (const s of touched) {
        this.stmt.touchSource.run(s.bytes, now, s.id);
        if (s.bytes > this.retention.maxBytesPerContainer) trimmed += this.trim(s);
      }
      return trimmed;
    });
    this.dropChunks = db.transaction((rows: ChunkRef[]) => {
      const bySource = new Map<number, number>();
      for (const r of rows) {
        this.stmt.deleteChunk.run(r.id);
        bySource.set(r.source, (bySource.get(r.source) ?? 0) + r.bytes);
      }
      for (const [id, bytes] of bySource) {
        const left = this.stmt.subtract.get(bytes, id) as { container_id: string; bytes: number } | undefined;
        if (!left) continue;
        const cached = this.sources.get(left.container_id);
        if (cached) cached.bytes = left.bytes;
        if (this.stmt.anyChunk.get(id) === undefined) {
          this.stmt.deleteSource.run(id);
          this.sources.delete(left.container_id);
        }
      }
      return rows.reduce((n, r) => n + r.lines, 0);
    });
  }

  /** Inserts the chunks in one transaction; returns the lines cut by containers' bounds. */
  write(chunks: ChunkIn[], now = Date.now()): number {
    try {
      return this.writeAll(chunks, now);
    } catch (err) {
      this.sources.clear(); // rolled back: cached byte counts are re-read
      throw err;
    }
  }

  private sourceOf(c: ChunkIn, now: number): Source {
    const known = this.sources.get(c.containerId);
    if (known) return known;
    const row = this.stmt.getSource.get(c.containerId) as { id: number; stub: number | null; bytes: number } | undefined;
    const stubKey = c.stubId === null ? null : this.stubKeyOf(c.stubId);
    const src = row ?? { id: Number(this.stmt.addSource.run(c.containerId, c.workspaceId, stubKey, now).lastInsertRowid), stub: stubKey, bytes: 0 };
    const source = { id: src.id, stubKey: src.stub, bytes: src.bytes };
    this.sources.set(c.containerId, source);
    return source;
  }

  private stubKeyOf(stubId: string): number {
    let key = this.stubKeys.get(stubId);
    if (key !== undefined) return key;
    key = (this.stmt.getStub.get(stubId) as { id: number } | undefined)?.id ?? Number(this.stmt.addStub.run(stubId).lastInsertRowid);
    this.stubKeys.set(stubId, key);
    return key;
  }

  /** Cuts a container's oldest chunks until it holds TRIM_TO of its bound; returns the lines cut. */
  private trim(src: Source): number {
    const target = src.bytes - Math.floor(this.retention.maxBytesPerContainer * TRIM_TO);
    let freed = 0;
    let cut = -1;
    let lines = 0;
    for (const row of this.stmt.oldest.iterate(src.id) as IterableIterator<{ id: number; bytes: number; lines: number }>) {
      freed += row.bytes;
      cut = row.id;
      lines += row.lines;
      if (freed >= target) break;
    }
    if (cut === -1) return 0;
    this.stmt.deleteUpTo.run(src.id, cut);
    src.bytes = Math.max(0, src.bytes - freed);
    this.stmt.setBytes.run(src.bytes, src.id);
    return lines;
  }

  /**
   * Chunks past the age, then the oldest chunks while the total is over its bound, a few hundred
   * per transaction so writes interleave; containers left with no chunk lose their row.
   */
  async prune(now: number): Promise<Omit<PruneResult, "container">> {
    const result = { age: 0, total: 0 };
    const cutoff = now - this.retention.maxAgeMs;
    const turn = () => new Promise<void>((r) => setImmediate(r));
    for (let rows = this.stmt.expired.all(cutoff) as ChunkRef[]; rows.length > 0 && this.db.open; rows = this.stmt.expired.all(cutoff) as ChunkRef[]) {
      result.age += this.dropChunks(rows);
      await turn();
    }
    while (this.db.open) {
      let over = (this.stmt.total.get() as { total: number }).total - this.retention.maxTotalBytes;
      const rows: ChunkRef[] = [];
      for (const r of this.stmt.first.all() as ChunkRef[]) {
        if (over <= 0) break;
        rows.push(r);
        over -= r.bytes;
      }
      if (rows.length === 0) break;
      result.total += this.dropChunks(rows);
      await turn();
    }
    return result;
  }
}

/** Messages between sqlite.ts and the writer thread. */
export type WriterRequest = { op: "chunk"; chunk: ChunkIn } | { op: "sync" | "close"; id: number } | { op: "prune"; id: number; now: number };
/** `committed` after each group commit (what it held, the lines containers' bounds cut, or why it failed); `reply` to a request. */
export type WriterReply =
  | { op: "committed"; lines: number; chars: number; trimmed: number; error?: string }
  | { op: "reply"; id: number; ok: true; value: unknown } | { op: "reply"; id: number; ok: false; error: string };

/**
 * Group commit: chunks are queued as they arrive and written in one transaction once the messages
 * at hand are read; `commit` reports each transaction through `report`.
 */
export class ChunkQueue {
  private batch: ChunkIn[] = [];
  private scheduled = false;

  constructor(private readonly writer: LogWriter, private readonly report: (reply: Extract<WriterReply, { op: "committed" }>) => void) {}

  add(chunk: ChunkIn): void {
    this.batch.push(chunk);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.commit());
  }

  commit(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const chunks = this.batch;
    this.batch = [];
    const lines = chunks.reduce((n, c) => n + c.lines, 0);
    const chars = chunks.reduce((n, c) => n + c.chars, 0);
    try {
      this.report({ op: "committed", lines, chars, trimmed: this.writer.write(chunks) });
    } catch (err) {
      this.report({ op: "committed", lines, chars, trimmed: 0, error: (err as Error).message });
    }
  }
}

// On its own thread: one connection; requests are handled in order, each after what came before it is committed.
if (!isMainThread && (workerData as { logWriter?: unknown } | null)?.logWriter) {
  const { path, retention } = (workerData as { logWriter: { path: string; retention: LogRetention } }).logWriter;
  const db = openLogDatabase(path);
  const writer = new LogWriter(db, retention);
  const port = parentPort!;
  const queue = new ChunkQueue(writer, (reply) => port.postMessage(reply));
  port.on("message", (request: WriterRequest) => {
    if (request.op === "chunk") return queue.add(request.chunk);
    queue.commit();
    const reply = (value: unknown) => port.postMessage({ op: "reply", id: request.id, ok: true, value } satisfies WriterReply);
    if (request.op === "sync") reply(null);
    else if (request.op === "prune") {
      writer.prune(request.now).then(reply, (err: unknown) => port.postMessage({ op: "reply", id: request.id, ok: false, error: (err as Error).message } satisfies WriterReply));
    } else {
      db.close();
      reply(null);
      port.close();
    }
  });
}
