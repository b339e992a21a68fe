/**
 * `beta9 serve` sessions: an ephemeral copy of a workload with exactly one container, outside any
 * deployment (its stub is `<kind>/serve`, which cannot be deployed, so it never shows up in
 * `deployment list`). The session has a stable URL, `POST /serve/:id`, while its stub changes on
 * every hot reload: the new stub's container must answer /health before it takes the session's
 * traffic, and only then is the old one stopped (after its in-flight invocations end).
 *
 * The CLI heartbeats the session; when heartbeats stop (Ctrl-C, a crash, kill -9 of the CLI, a
 * lost network) the session ends and its container goes away. Sessions live in the gateway's
 * memory: a gateway restart ends them all (the CLI then reports the session gone).
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { Beta9Error, type Stub } from "@beta9/protocol";
import type { Autoscaler } from "./autoscaler.js";
import type { ServeSession as WireServeSession } from "@beta9/protocol";

/** The session as the gateway tracks it; the API adds its `url` (protocol's ServeSession). */
export type ServeSession = Omit<WireServeSession, "url">;

interface Entry {
  session: Omit<ServeSession, "containerId" | "ready">;
  stub: Stub;
  lastHeartbeat: number;
  /** A reload in progress: a second one waits for it, so the session never runs two new stubs. */
  replacing: Promise<unknown>;
}

export interface ServeSessionsOptions {
  autoscaler: Autoscaler;
  logger?: Logger;
  /** A session with no heartbeat for this long ends (default 15 s). */
  heartbeatTimeoutMs?: number;
  /** How long a reload waits for the new container to answer (default 120 s: image fetch). */
  readyTimeoutMs?: number;
}

const SERVABLE = ["endpoint", "taskqueue", "function"];

export class ServeSessions {
  private readonly sessions = new Map<string, Entry>();
  private readonly reaper: NodeJS.Timeout;

  constructor(private readonly o: ServeSessionsOptions) {
    const timeout = o.heartbeatTimeoutMs ?? 15_000;
    this.reaper = setInterval(() => {
      const now = Date.now();
      for (const [id, entry] of this.sessions) {
        if (now - entry.lastHeartbeat <= timeout) continue;
        this.o.logger?.info({ session: id, stub: entry.stub.name }, "serve session ended: no heartbeat");
        this.end(id);
      }
    }, Math.min(1000, Math.max(50, Math.floor(timeout / 4))));
    this.reaper.unref();
  }

  /** Starts a session on a `<kind>/serve` stub: its one container starts now. */
  create(stub: Stub): ServeSession {
    checkServable(stub);
    const id = randomUUID();
    const session = { id, workspaceId: stub.workspaceId, stubId: stub.id, kind: stub.type.split("/")[0]!, createdAt: new Date().toISOString(), reloads: 0 };
    this.sessions.set(id, { session, stub, lastHeartbeat: Date.now(), replacing: Promise.resolve() });
    this.o.autoscaler.pin(stub);
    return this.view(this.sessions.get(id)!);
  }

  get(workspaceId: string, id: string): ServeSession | undefined {
    const entry = this.entry(workspaceId, id);
    return entry && this.view(entry);
  }

  /** The stub a call to the session runs now. */
  stubOf(workspaceId: string, id: string): Stub | undefined {
    return this.entry(workspaceId, id)?.stub;
  }

  heartbeat(workspaceId: string, id: string): ServeSession | undefined {
    const entry = this.entry(workspaceId, id);
    if (!entry) return undefined;
    entry.lastHeartbeat = Date.now();
    return this.view(entry);
  }

  /**
   * Hot reload: starts `stub`'s container, waits until it answers, switches the session to it,
   * then drains the old stub's container. Exactly one container serves before and after.
   */
  async replace(workspaceId: string, id: string, stub: Stub): Promise<ServeSession | undefined> {
    const entry = this.entry(workspaceId, id);
    if (!entry) return undefined;
    checkServable(stub);
    if (stub.type !== entry.stub.type) {
      throw new Beta9Error("CONFLICT", { reason: `this session serves a ${entry.stub.type}; ${stub.name} is a ${stub.type}: start another beta9 serve` });
    }
    const run = entry.replacing.then(async () => {
      if (this.sessions.get(id) !== entry) return;
      if (stub.id === entry.stub.id) return;
      this.o.autoscaler.pin(stub);
      try {
        // A slot on the new stub exists only once its container answered /health.
        const slot = await this.o.autoscaler.acquire(stub);
        slot.release();
      } catch (err) {
        this.o.autoscaler.drain(stub.id);
        throw err;
      }
      if (this.sessions.get(id) !== entry) {
        this.o.autoscaler.drain(stub.id);
        return;
      }
      const old = entry.stub;
      entry.stub = stub;
      entry.session.stubId = stub.id;
      entry.session.reloads += 1;
      entry.lastHeartbeat = Date.now();
      this.o.autoscaler.drain(old.id);
    });
    entry.replacing = run.catch(() => undefined);
    await run;
    return this.view(entry);
  }

  /** Ends the session: its container stops (after any in-flight invocation). */
  end(id: string): boolean {
    const entry = this.sessions.get(id);
    if (!entry) return false;
    this.sessions.delete(id);
    this.o.autoscaler.drain(entry.stub.id);
    return true;
  }

  endInWorkspace(workspaceId: string, id: string): boolean {
    return this.entry(workspaceId, id) !== undefined && this.end(id);
  }

  close(): void {
    clearInterval(this.reaper);
    for (const id of [...this.sessions.keys()]) this.end(id);
  }

  private entry(workspaceId: string, id: string): Entry | undefined {
    const entry = this.sessions.get(id);
    return entry && entry.session.workspaceId === workspaceId ? entry : undefined;
  }

  private view(entry: Entry): ServeSession {
    const container = this.o.autoscaler.containersOf(entry.stub.id)[0];
    return { ...entry.session, containerId: container?.id ?? null, ready: container?.ready ?? false };
  }
}

function checkServable(stub: Stub): void {
  const [kind, variant] = stub.type.split("/");
  if (variant !== "serve" || !SERVABLE.includes(kind!)) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}; beta9 serve runs endpoint, taskqueue and function stubs of variant serve (create them with type "<kind>/serve")` });
  }
  if (!stub.objectId || !stub.config.handler) {
    throw new Beta9Error("CONFLICT", { reason: `${stub.name} has no code bundle or handler to run; create the stub with objectId and config.handler (beta9 serve does)` });
  }
}
