/**
 * Live container state on the gateway: one record per container request, its lifecycle
 * (PENDING → RUNNING → STOPPING → EXITED), and a bounded history of its log lines that clients
 * read or follow. Live state, not durable: after a gateway restart the workers' hello messages
 * bring back every container that still runs.
 */
import { TypedEmitter } from "../events.js";
import type {
  ContainerExitReason, ContainerRequest, ContainerState, ContainerStateReport, HostPortAddress, LogLine,
} from "@beta9/protocol";

export interface ContainerRecord {
  id: string;
  workspaceId: string;
  stubId: string | null;
  request: ContainerRequest;
  workerId: string | null;
  /** The GPU type the scheduler gave it (one of the request's preferences), if any. */
  gpuType: string | null;
  state: ContainerState;
  exitCode: number | null;
  reason: ContainerExitReason | null;
  message: string | null;
  ports: Record<string, HostPortAddress>;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
}

export type ContainerEvent =
  | { kind: "state"; container: ContainerRecord }
  | { kind: "logs"; lines: LogLine[] };

export interface ContainerRegistryOptions {
  /** Lines kept per container (oldest dropped first). */
  maxLogLines?: number;
  /** Characters kept per container (oldest lines dropped first): bounds memory whatever the lines' length. */
  maxLogChars?: number;
  /** Exited containers kept for `list` and `logs` (oldest dropped first). */
  maxExited?: number;
}

const ORDER: Record<ContainerState, number> = { PENDING: 0, RUNNING: 1, STOPPING: 2, EXITED: 3 };

export class ContainerRegistry {
  private readonly records = new Map<string, ContainerRecord>();
  private readonly logs = new Map<string, LogLine[]>();
  private readonly logChars = new Map<string, number>();
  /** A container's events under its id, and every container's under "*". */
  private readonly events = new TypedEmitter<Record<string, ContainerEvent>>();
  private readonly exitedOrder: string[] = [];
  /** Containers not yet EXITED, per workspace (quotas read it on every submit). */
  private readonly activeByWorkspace = new Map<string, number>();
  private readonly maxLogLines: number;
  private readonly maxLogChars: number;
  private readonly maxExited: number;

  constructor(options: ContainerRegistryOptions = {}) {
    this.maxLogLines = options.maxLogLines ?? 5000;
    this.maxLogChars = options.maxLogChars ?? 512 * 1024;
    this.maxExited = options.maxExited ?? 1000;
  }

  create(request: ContainerRequest, state: ContainerState = "PENDING"): ContainerRecord {
    const record: ContainerRecord = {
      id: request.containerId, workspaceId: request.workspaceId, stubId: request.stubId, request, workerId: null, gpuType: null,
      state, exitCode: null, reason: null, message: null, ports: {}, createdAt: Date.now(), startedAt: null, endedAt: null,
    };
    this.records.set(record.id, record);
    this.logs.set(record.id, []);
    if (state !== "EXITED") this.activeByWorkspace.set(record.workspaceId, this.active(record.workspaceId) + 1);
    return record;
  }

  /** How many of the workspace's containers have not exited. */
  active(workspaceId: string): number {
    return this.activeByWorkspace.get(workspaceId) ?? 0;
  }

  get(id: string): ContainerRecord | undefined {
    return this.records.get(id);
  }

  /** Workspace-scoped lookup: another workspace's container is as absent as a missing one. */
  getInWorkspace(workspaceId: string, id: string): ContainerRecord | undefined {
    const record = this.records.get(id);
    return record?.workspaceId === workspaceId ? record : undefined;
  }

  list(filter: { workspaceId?: string; workerId?: string; active?: boolean } = {}): ContainerRecord[] {
    return [...this.records.values()].filter((r) =>
      (filter.workspaceId === undefined || r.workspaceId === filter.workspaceId) &&
      (filter.workerId === undefined || r.workerId === filter.workerId) &&
      (filter.active === undefined || (r.state !== "EXITED") === filter.active));
  }

  /** Applies a state report; states only move forward, so a late or repeated report is harmless. */
  apply(report: ContainerStateReport & { workerId?: string }): ContainerRecord | undefined {
    const record = this.records.get(report.containerId);
    if (!record || ORDER[report.state] < ORDER[record.state] || record.state === "EXITED") return record;
    if (report.workerId !== undefined) record.workerId = report.workerId;
    if (report.ports) record.ports = report.ports;
    if (report.state === "RUNNING" && record.startedAt === null) record.startedAt = Date.now();
    record.state = report.state;
    if (report.state === "EXITED") {
      const left = this.active(record.workspaceId) - 1;
      if (left > 0) this.activeByWorkspace.set(record.workspaceId, left);
      else this.activeByWorkspace.delete(record.workspaceId);
      record.exitCode = report.exitCode ?? null;
      record.reason = report.reason ?? "exited";
      record.message = report.message ?? null;
      record.endedAt = Date.now();
      this.retire(record.id);
    }
    this.events.emit(record.id, { kind: "state", container: record } satisfies ContainerEvent);
    this.events.emit("*", { kind: "state", container: record } satisfies ContainerEvent);
    return record;
  }

  appendLogs(id: string, lines: LogLine[]): void {
    const history = this.logs.get(id);
    if (!history || lines.length === 0) return;
    history.push(...lines);
    let chars = (this.logChars.get(id) ?? 0) + lines.reduce((n, l) => n + l.line.length, 0);
    let drop = Math.max(0, history.length - this.maxLogLines);
    for (let i = 0; i < drop; i++) chars -= history[i]!.line.length;
    while (chars > this.maxLogChars && drop < history.length - 1) chars -= history[drop++]!.line.length;
    if (drop > 0) history.splice(0, drop);
    this.logChars.set(id, chars);
    this.events.emit(id, { kind: "logs", lines } satisfies ContainerEvent);
  }

  logHistory(id: string): readonly LogLine[] {
    return this.logs.get(id) ?? [];
  }

  /** Listens to one container (or "*" for every state change); returns the unsubscribe function. */
  subscribe(id: string, listener: (event: ContainerEvent) => void): () => void {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  private retire(id: string): void {
    this.exitedOrder.push(id);
    while (this.exitedOrder.length > this.maxExited) {
      const old = this.exitedOrder.shift()!;
      this.records.delete(old);
      this.logs.delete(old);
      this.logChars.delete(old);
    }
  }
}
