/**
 * Durable container logs. The interface every backend implements (sqlite.ts is the embedded one;
 * `conformance.ts` is the suite each must pass), kept apart from the main Store: log volume is
 * orders of magnitude above every other write, so it gets its own database and its own bounds,
 * and a gateway on another main store (Postgres) keeps the same log backend unless it plugs in its own.
 *
 * Writes are buffered: `append` never waits for the disk (a log flood must not stall the
 * gateway); lines are readable at once and durable within the flush interval.
 */
import type { LogEntry, LogLine } from "@beta9/protocol";

/** Where a batch of lines comes from: known from the container record, never from the worker. */
export interface LogSource {
  workspaceId: string;
  containerId: string;
  stubId: string | null;
}

/** Whose lines a query reads (the workspace is always checked too). */
export type LogSelector = { containerId: string } | { stubId: string } | { taskId: string };

export interface LogQuery {
  workspaceId: string;
  select: LogSelector;
  /** Lines that arrived at the gateway at or after this Unix ms. */
  sinceMs?: number;
  /** Only lines with a greater seq; the first `limit` of them (else the last `limit` lines). */
  afterSeq?: number;
  limit: number;
}

export interface LogRetention {
  /** Lines older than this are deleted (default 7 days). */
  maxAgeMs: number;
  /** A container's oldest lines are deleted past this many bytes of text (default 16 MiB). */
  maxBytesPerContainer: number;
  /** Whole containers' logs, oldest first, are deleted past this total (default 4 GiB). */
  maxTotalBytes: number;
}

export const DEFAULT_LOG_RETENTION: LogRetention = {
  maxAgeMs: 7 * 86_400_000,
  maxBytesPerContainer: 16 * 1024 * 1024,
  maxTotalBytes: 4 * 1024 * 1024 * 1024,
};

export interface PruneResult {
  /** Lines deleted for age, for a container's bound, for the total bound. */
  age: number;
  container: number;
  total: number;
}

/** Counters since start, for /metrics. */
export interface LogStats {
  /** Lines and bytes (text plus a per-line overhead) accepted. */
  lines: number;
  bytes: number;
  /** Lines lost: buffered past the memory bound, or a failed write. */
  dropped: number;
  /** Lines deleted by retention, by rule. */
  pruned: PruneResult;
  flushes: number;
  /** Event-loop time spent preparing writes (a backend that writes elsewhere counts only its part here). */
  flushSeconds: number;
}

export interface LogStore {
  /** Buffers the lines (seq assigned now); live subscribers see them at once. */
  append(source: LogSource, lines: readonly LogLine[]): void;
  /** Matching lines in seq order (see LogQuery). Lines appended before the call are included. */
  query(query: LogQuery): Promise<LogEntry[]>;
  /** The workspace whose container wrote stored lines under this id, if any. */
  ownerOf(containerId: string): Promise<string | undefined>;
  /** Calls `listener` with every appended batch; returns the unsubscribe. */
  subscribe(listener: (source: LogSource, entries: readonly LogEntry[]) => void): () => void;
  stats(): LogStats;
  /** Applies the retention now (it also runs on its own timer). */
  prune(now?: number): Promise<PruneResult>;
  /** Writes what is buffered and closes. */
  close(): Promise<void>;
}

const DURATION = /^([0-9]{1,9})(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `7d`, `12h`, `90m`, `3600s` in ms; undefined when it is none of those. */
export function parseDuration(value: string): number | undefined {
  const match = DURATION.exec(value.trim());
  return match ? Number(match[1]) * UNIT_MS[match[2]!]! : undefined;
}

const SIZE = /^([0-9]{1,12})(Ki|Mi|Gi|Ti)?$/;
const UNIT_BYTES: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

/** `16Mi`, `4Gi`, `65536` (bytes) in bytes; undefined when it is none of those. */
export function parseSize(value: string): number | undefined {
  const match = SIZE.exec(value.trim());
  return match ? Number(match[1]) * (match[2] ? UNIT_BYTES[match[2]]! : 1) : undefined;
}

/**
 * The retention from explicit options, else BETA9_LOG_RETENTION (a duration), BETA9_LOG_MAX_PER_CONTAINER
 * and BETA9_LOG_MAX_TOTAL (sizes like 16Mi, 4Gi), else the defaults. A malformed value throws:
 * a typo must not silently keep logs for ever (or not at all).
 */
export function resolveLogRetention(given: Partial<LogRetention> = {}, env: NodeJS.ProcessEnv = process.env): LogRetention {
  const fromEnv = (name: string, parse: (v: string) => number | undefined): number | undefined => {
    const raw = env[name]?.trim();
    if (!raw) return undefined;
    const value = parse(raw);
    if (value === undefined || !(value > 0)) throw new Error(`${name}=${JSON.stringify(raw)} is not valid: expected ${name === "BETA9_LOG_RETENTION" ? "a duration like 7d, 12h or 90m" : "a size like 16Mi or 4Gi"}`);
    return value;
  };
  return {
    maxAgeMs: given.maxAgeMs ?? fromEnv("BETA9_LOG_RETENTION", parseDuration) ?? DEFAULT_LOG_RETENTION.maxAgeMs,
    maxBytesPerContainer: given.maxBytesPerContainer ?? fromEnv("BETA9_LOG_MAX_PER_CONTAINER", parseSize) ?? DEFAULT_LOG_RETENTION.maxBytesPerContainer,
    maxTotalBytes: given.maxTotalBytes ?? fromEnv("BETA9_LOG_MAX_TOTAL", parseSize) ?? DEFAULT_LOG_RETENTION.maxTotalBytes,
  };
}
