/**
 * The embedded log store: one SQLite file (logs.db) beside the main database, not inside it, so a
 * log flood's writes, WAL checkpoints and retention deletes never contend with the store's hot
 * writes (task puts, claims) nor bloat its file; deleting logs.db loses logs and nothing else.
 *
 * Why SQLite rather than append-only files per container: the queries cut across containers (a
 * deployment's lines, a task's lines from whichever container ran it, "since 10m"), which indexes
 * answer directly; files would need scans or an index of their own.
 *
 * How a flood stays off the event loop: lines are kept in chunks, not a row each (a chunk is a run
 * of one container's lines with consecutive seqs, up to CHUNK_LINES, as one JSON text), so a line
 * costs a JSON encode here; the inserts, deletes and checkpoints run on a writer thread
 * (sqlite-writer.ts), one write in flight at a time while the next batch gathers (group commit).
 * Reads run here on a second connection (WAL lets them run beside the writer), after the writes
 * already asked for were committed. `log_chunk_tasks` says which tasks have lines in which chunk.
 */
import type Database from "better-sqlite3";
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import type { LogEntry, LogLine } from "@beta9/protocol";
import { ChunkQueue, LogWriter, openLogDatabase, type ChunkIn, type WriterReply, type WriterRequest } from "./sqlite-writer.js";
import { DEFAULT_LOG_RETENTION, type LogQuery, type LogRetention, type LogSource, type LogStats, type LogStore, type PruneResult } from "./types.js";

/** Bytes a line costs beyond its text, so a flood of empty lines is bounded too. */
export const LINE_OVERHEAD_BYTES = 32;
/** Lines and characters per chunk: bounds what one read decodes to reach a line. */
const CHUNK_LINES = 1000;
const CHUNK_CHARS = 256 * 1024;

export interface SqliteLogStoreOptions {
  retention?: Partial<LogRetention>;
  /** How long appended lines may wait before they are written (default 100 ms). */
  flushMs?: number;
  /** How often retention runs (default 60 s; 0: only when prune() is called). */
  pruneIntervalMs?: number;
  /** Characters buffered or being written past which new lines are dropped and counted (default 64 Mi): a stalled disk cannot grow memory without bound. */
  maxPendingChars?: number;
  logger?: Logger;
}

/** A chunk being filled. */
interface Run {
  source: LogSource;
  seq: number;
  lines: LogLine[];
  chars: number;
  bytes: number;
}

/** A chunk's JSON: its task ids, and per line [stream (1: stderr), at, 1 + index in tasks (0: none), text]. */
interface Encoded {
  t: string[];
  l: [0 | 1, number, number, string][];
}

interface ChunkRow {
  seq: number;
  container_id: string;
  body: string;
}

function encode(run: Run): ChunkIn {
  const tasks: string[] = [];
  const l: Encoded["l"] = new Array(run.lines.length);
  for (let i = 0; i < run.lines.length; i++) {
    const line = run.lines[i]!;
    let task = 0;
    if (line.taskId !== undefined) {
      task = tasks.indexOf(line.taskId) + 1;
      if (task === 0) task = tasks.push(line.taskId);
    }
    l[i] = [line.stream === "stderr" ? 1 : 0, line.at, task, line.line];
  }
  const { containerId, workspaceId, stubId } = run.source;
  return {
    containerId, workspaceId, stubId, seq: run.seq, lines: run.lines.length, chars: run.chars, bytes: run.bytes, tasks,
    body: JSON.stringify({ t: tasks, l } satisfies Encoded),
  };
}

/** Where writes go: the writer thread, or (in-memory databases) a LogWriter called in place. */
interface WriterLink {
  /** Queues a chunk; `committed` hears when its group commit is done. */
  send(chunk: ChunkIn): void;
  /** Resolves once every chunk sent before the call is committed. */
  sync(): Promise<void>;
  prune(now: number): Promise<Omit<PruneResult, "container">>;
  close(): Promise<void>;
}

type Committed = Extract<WriterReply, { op: "committed" }>;

function threadLink(path: string, retention: LogRetention, committed: (c: Committed) => void, logger: Logger | undefined): WriterLink {
  const worker = new Worker(new URL("./sqlite-writer.js", import.meta.url), { workerData: { logWriter: { path, retention } } });
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 0;
  let failed: Error | undefined;
  let closing = false;
  // The thread holds the process open only while something waits on it: lines sent and not yet committed, requests.
  let outstanding = 0;
  const hold = (delta: number) => {
    const before = outstanding;
    outstanding += delta;
    if (before === 0 && outstanding > 0) worker.ref();
    else if (before > 0 && outstanding === 0) worker.unref();
  };
  worker.unref();
  worker.on("message", (reply: WriterReply) => {
    if (reply.op === "committed") {
      hold(-reply.lines);
      return committed(reply);
    }
    const w = waiting.get(reply.id);
    waiting.delete(reply.id);
    if (reply.ok) w?.resolve(reply.value);
    else w?.reject(new Error(reply.error));
  });
  const fail = (err: Error) => {
    if (failed) return;
    failed = err;
    logger?.error({ err }, "the log writer thread stopped; container logs are no longer stored");
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on("error", fail);
  const exited = new Promise<void>((resolve) => worker.once("exit", (code) => {
    if (!closing) fail(new Error(`the log writer thread exited with code ${code}`));
    resolve();
  }));
  const request = (op: "sync" | "prune" | "close", extra: { now?: number } = {}) => {
    if (failed) return Promise.reject(failed);
    const id = next++;
    hold(1);
    return new Promise<unknown>((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ op, id, ...extra } as WriterRequest);
    }).finally(() => hold(-1));
  };
  return {
    send(chunk) {
      if (failed) {
        // Counted as dropped by the store, as a failed commit would be.
        committed({ op: "committed", lines: chunk.lines, chars: chunk.chars, trimmed: 0, error: failed.message });
        return;
      }
      hold(chunk.lines);
      worker.postMessage({ op: "chunk", chunk } satisfies WriterRequest);
    },
    sync: () => request("sync").then(() => undefined),
    prune: (now) => request("prune", { now }) as Promise<Omit<PruneResult, "container">>,
    async close() {
      // The thread commits what it holds, closes its database and ends; terminate only one that does not answer.
      closing = true;
      if (!failed) await request("close").catch(() => undefined);
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function inlineLink(db: Database.Database, retention: LogRetention, committed: (c: Committed) => void): WriterLink {
  const writer = new LogWriter(db, retention);
  const queue = new ChunkQueue(writer, committed);
  return {
    send: (chunk) => queue.add(chunk),
    sync: async () => queue.commit(),
    prune: async (now) => (queue.commit(), writer.prune(now)),
    close: async () => queue.commit(),
  };
}

export class SqliteLogStore implements LogStore {
  readonly retention: LogRetention;
  private readonly db: Database.Database;
  private readonly link: WriterLink;
  private readonly events = new EventEmitter();
  /** Containers seen since start and their workspace (ownerOf without a read). */
  private readonly owners = new Map<string, string>();
  /** The chunk being filled; full ones are sent at once, this one within flushMs. */
  private open: Run | undefined;
  /** Characters buffered or sent and not yet committed. */
  private pendingChars = 0;
  private nextSeq: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly pruner: NodeJS.Timeout | undefined;
  private pruning: Promise<PruneResult> | undefined;
  private closed = false;
  private readonly flushMs: number;
  private readonly maxPendingChars: number;
  private readonly counters: LogStats = { lines: 0, bytes: 0, dropped: 0, pruned: { age: 0, container: 0, total: 0 }, flushes: 0, flushSeconds: 0 };
  private readonly select: Record<string, Database.Statement>;
  private readonly firstSince: Database.Statement;
  private readonly owner: Database.Statement;
  private readonly stubKey: Database.Statement;
  private readonly flushNow = () => this.flush();

  /** `path` is a file (written on a thread of its own), or ":memory:" for tests (written in place). */
  constructor(private readonly path: string, private readonly options: SqliteLogStoreOptions = {}) {
    this.retention = { ...DEFAULT_LOG_RETENTION, ...options.retention };
    this.flushMs = options.flushMs ?? 100;
    this.maxPendingChars = options.maxPendingChars ?? 64 * 1024 * 1024;
    const db = openLogDatabase(path);
    this.db = db;
    this.nextSeq = ((db.prepare(`SELECT MAX(seq_last) AS seq FROM log_chunks`).get() as { seq: number | null }).seq ?? 0) + 1;
    const from = `SELECT c.seq, s.container_id, c.body FROM log_chunks c JOIN log_sources s ON s.id = c.source`;
    const where = {
      containerId: `${from} WHERE s.container_id = ? AND c.source = s.id`,
      stubId: `${from} WHERE c.stub = ?`, // the stub's key, looked up first: a subquery here would keep the planner off the index
      taskId: `SELECT c.seq, s.container_id, c.body FROM log_chunk_tasks t JOIN log_chunks c ON c.id = t.chunk JOIN log_sources s ON s.id = c.source WHERE t.task_id = ?`,
    };
    // Newest chunks first (a tail, read backwards), or oldest first past a cursor; every read checks the workspace.
    this.select = Object.fromEntries(Object.entries(where).flatMap(([by, sql]) => (["ASC", "DESC"] as const).map((order) => [
      `${by} ${order}`, db.prepare(`${sql} AND s.workspace_id = ? AND c.seq_last > ? AND c.id >= ? ORDER BY c.id ${order}`),
    ])));
    this.firstSince = db.prepare(`SELECT id FROM log_chunks WHERE written_at >= ? ORDER BY written_at, id LIMIT 1`);
    this.owner = db.prepare(`SELECT workspace_id FROM log_sources WHERE container_id = ?`);
    this.stubKey = db.prepare(`SELECT id FROM log_stubs WHERE stub_id = ?`);
    const committed = (c: Committed) => {
      this.pendingChars -= c.chars;
      this.counters.flushes += 1;
      this.counters.pruned.container += c.trimmed;
      if (c.error === undefined) return;
      // A full disk loses these lines, not the gateway; the next commit tries again.
      this.counters.dropped += c.lines;
      options.logger?.error({ err: c.error, lines: c.lines }, "writing container logs failed; lines dropped");
    };
    this.link = path === ":memory:" ? inlineLink(db, this.retention, committed) : threadLink(path, this.retention, committed, options.logger);
    const interval = options.pruneIntervalMs ?? 60_000;
    if (interval > 0) {
      this.pruner = setInterval(() => void this.prune().catch((err: unknown) => options.logger?.error({ err }, "log retention failed")), interval);
      this.pruner.unref();
    }
  }

  append(source: LogSource, lines: readonly LogLine[]): void {
    if (lines.length === 0 || this.closed) return;
    this.owners.set(source.containerId, source.workspaceId);
    const listening = this.events.listenerCount("append") > 0;
    const entries: LogEntry[] = [];
    for (const l of lines) {
      if (this.pendingChars > this.maxPendingChars) {
        this.counters.dropped += 1;
        continue;
      }
      let run = this.open;
      if (!run || run.source.containerId !== source.containerId || run.lines.length >= CHUNK_LINES || run.chars >= CHUNK_CHARS) {
        // A chunk is encoded and sent as soon as it is complete: the cost is spread over the appends.
        this.flush();
        run = this.open = { source, seq: this.nextSeq, lines: [], chars: 0, bytes: 0 };
      }
      const seq = this.nextSeq++;
      const bytes = Buffer.byteLength(l.line) + LINE_OVERHEAD_BYTES;
      run.lines.push(l);
      run.chars += l.line.length;
      run.bytes += bytes;
      this.pendingChars += l.line.length;
      this.counters.lines += 1;
      this.counters.bytes += bytes;
      if (listening) entries.push({ seq, containerId: source.containerId, taskId: l.taskId ?? null, stream: l.stream, line: l.line, at: l.at });
    }
    if (entries.length > 0) this.events.emit("append", source, entries);
    if (this.open) this.timer ??= setTimeout(this.flushNow, this.flushMs);
  }

  /** Encodes the chunk being filled and sends it to the writer. */
  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const run = this.open;
    this.open = undefined;
    if (!run) return;
    const started = performance.now();
    const chunk = encode(run);
    this.counters.flushSeconds += (performance.now() - started) / 1000;
    this.link.send(chunk);
  }

  /** Resolves once every line appended before the call is committed. */
  private async written(): Promise<void> {
    this.flush();
    await this.link.sync();
  }

  async query(q: LogQuery): Promise<LogEntry[]> {
    await this.written();
    if (!this.db.open) return [];
    const sel = q.select;
    const stubKey = "stubId" in sel ? (this.stubKey.get(sel.stubId) as { id: number } | undefined)?.id : undefined;
    if ("stubId" in sel && stubKey === undefined) return [];
    const [by, key] = "containerId" in sel ? ["containerId", sel.containerId] : "stubId" in sel ? ["stubId", stubKey] : ["taskId", sel.taskId];
    const tail = q.afterSeq === undefined;
    const after = q.afterSeq ?? 0;
    // Chunks written since `sinceMs` (each is written within a flush interval of its lines' arrival).
    const fromChunk = q.sinceMs === undefined ? 0 : ((this.firstSince.get(q.sinceMs) as { id: number } | undefined)?.id ?? Number.MAX_SAFE_INTEGER);
    const taskId = "taskId" in sel ? sel.taskId : undefined;
    const out: LogEntry[] = [];
    for (const row of this.select[`${by} ${tail ? "DESC" : "ASC"}`]!.iterate(key, q.workspaceId, after, fromChunk) as IterableIterator<ChunkRow>) {
      const { t, l } = JSON.parse(row.body) as Encoded;
      const task = taskId === undefined ? 0 : t.indexOf(taskId) + 1;
      const take = (i: number) => {
        const [stream, at, k, line] = l[i]!;
        const seq = row.seq + i;
        if (seq <= after || (task !== 0 && k !== task)) return;
        out.push({ seq, containerId: row.container_id, taskId: k === 0 ? null : t[k - 1]!, stream: stream === 1 ? "stderr" : "stdout", line, at });
      };
      if (tail) for (let i = l.length - 1; i >= 0 && out.length < q.limit; i--) take(i);
      else for (let i = 0; i < l.length && out.length < q.limit; i++) take(i);
      if (out.length >= q.limit) break;
    }
    return tail ? out.reverse() : out;
  }

  async ownerOf(containerId: string): Promise<string | undefined> {
    const known = this.owners.get(containerId);
    if (known !== undefined) return known;
    if (!this.db.open) return undefined;
    return (this.owner.get(containerId) as { workspace_id: string } | undefined)?.workspace_id;
  }

  subscribe(listener: (source: LogSource, entries: readonly LogEntry[]) => void): () => void {
    // One listener per follower (`logs -f`, the dashboard): a hundred is normal, not a leak.
    this.events.setMaxListeners(0);
    this.events.on("append", listener);
    return () => this.events.off("append", listener);
  }

  stats(): LogStats {
    return { ...this.counters, pruned: { ...this.counters.pruned } };
  }

  /** Applies the retention on the writer (one prune at a time; a call during one joins it). */
  prune(now = Date.now()): Promise<PruneResult> {
    this.pruning ??= (async () => {
      await this.written();
      const { age, total } = await this.link.prune(now);
      // Their rows may be gone: ownership is read again.
      this.owners.clear();
      this.counters.pruned.age += age;
      this.counters.pruned.total += total;
      return { age, container: 0, total };
    })().finally(() => (this.pruning = undefined));
    return this.pruning;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pruner) clearInterval(this.pruner);
    await this.pruning?.catch(() => undefined);
    this.flush();
    await this.link.close(); // commits what was sent first
    this.events.removeAllListeners();
    if (this.db.open) this.db.close();
  }

  toString(): string {
    return `SqliteLogStore(${this.path})`;
  }
}
