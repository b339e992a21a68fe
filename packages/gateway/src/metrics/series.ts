/**
 * Recent per-workload time series for the dashboard's charts: calls, errors, p50/p99 latency, cold
 * starts and containers, in fixed steps (default 10 s, the last 30 min). Prometheus keeps the long
 * history; this answers "what did my deployment just do" without one.
 *
 * Bounded: at most `maxStubsPerWorkspace` workloads of one workspace (its least recently active is
 * dropped: one busy workspace never pushes another's charts out) and `maxStubs` in all (past that,
 * the least recently active of the workspace holding the most goes), `points` steps each, and a
 * step holds a fixed 24-bucket latency histogram. Nothing is kept for a step in which nothing
 * happened. A workload whose workspace is not known yet (a task outcome) counts under "" until a
 * call that names it.
 */
import type { ContainerRecord } from "../scheduler/containers.js";

export interface SeriesPoint {
  /** Start of the step, ms since the epoch. */
  t: number;
  calls: number;
  errors: number;
  /** Latency percentiles of the step's calls, in seconds (null: no calls); the upper bound of the histogram bucket. */
  p50: number | null;
  p99: number | null;
  coldStarts: number;
  /** Containers of the workload not exited, sampled at the end of the step. */
  containers: number;
}

interface Step {
  t: number;
  calls: number;
  errors: number;
  coldStarts: number;
  containers: number;
  latency: Uint32Array | null;
}

/** Bucket upper bounds in seconds: 1 ms to ~4 min, each 1.7x the last. */
const BOUNDS = Array.from({ length: 24 }, (_, i) => 0.001 * 1.7 ** i);

function bucketOf(seconds: number): number {
  for (let i = 0; i < BOUNDS.length; i++) if (seconds <= BOUNDS[i]!) return i;
  return BOUNDS.length - 1;
}

function percentile(h: Uint32Array, total: number, q: number): number {
  const rank = Math.max(1, Math.ceil(total * q));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i]!;
    if (seen >= rank) return Math.round(BOUNDS[i]! * 1e4) / 1e4;
  }
  return BOUNDS[BOUNDS.length - 1]!;
}

export interface WorkloadSeriesOptions {
  stepMs?: number;
  points?: number;
  /** Workloads kept in all (default 1024). */
  maxStubs?: number;
  /** Workloads kept per workspace (default 256). */
  maxStubsPerWorkspace?: number;
  now?: () => number;
}

interface Tracked {
  workspaceId: string;
  steps: Step[];
}

export class WorkloadSeries {
  readonly stepMs: number;
  readonly points: number;
  private readonly maxStubs: number;
  private readonly maxPerWorkspace: number;
  private readonly now: () => number;
  /** stub id → its workspace and steps (oldest first); Map order is least recently active first (re-inserted on use). */
  private readonly stubs = new Map<string, Tracked>();
  /** workspace id → its stub ids, least recently active first. */
  private readonly byWorkspace = new Map<string, Set<string>>();

  constructor(options: WorkloadSeriesOptions = {}) {
    this.stepMs = options.stepMs ?? 10_000;
    this.points = options.points ?? 180;
    this.maxStubs = options.maxStubs ?? 1024;
    this.maxPerWorkspace = options.maxStubsPerWorkspace ?? 256;
    this.now = options.now ?? Date.now;
  }

  private drop(stubId: string): void {
    const tracked = this.stubs.get(stubId);
    if (!tracked) return;
    this.stubs.delete(stubId);
    const mine = this.byWorkspace.get(tracked.workspaceId);
    mine?.delete(stubId);
    if (mine?.size === 0) this.byWorkspace.delete(tracked.workspaceId);
  }

  /** Makes room for one more workload of `workspaceId`: its own oldest first, then the biggest workspace's. */
  private makeRoom(workspaceId: string): void {
    const mine = this.byWorkspace.get(workspaceId);
    while (mine && mine.size >= this.maxPerWorkspace) this.drop(mine.values().next().value!);
    while (this.stubs.size >= this.maxStubs) {
      let biggest: Set<string> | undefined;
      for (const set of this.byWorkspace.values()) if (!biggest || set.size > biggest.size) biggest = set;
      if (!biggest) break;
      this.drop(biggest.values().next().value!);
    }
  }

  private step(stubId: string, workspaceId: string | undefined, at = this.now()): Step {
    const t = at - (at % this.stepMs);
    let tracked = this.stubs.get(stubId);
    if (tracked && workspaceId !== undefined && tracked.workspaceId !== workspaceId) {
      // Its workspace is known now: it moves there (and counts there).
      const steps = tracked.steps;
      this.drop(stubId);
      tracked = { workspaceId, steps };
      this.makeRoom(workspaceId);
    } else if (tracked) {
      this.stubs.delete(stubId);
    } else {
      tracked = { workspaceId: workspaceId ?? "", steps: [] };
      this.makeRoom(tracked.workspaceId);
    }
    this.stubs.set(stubId, tracked);
    let mine = this.byWorkspace.get(tracked.workspaceId);
    if (!mine) this.byWorkspace.set(tracked.workspaceId, (mine = new Set()));
    mine.delete(stubId);
    mine.add(stubId);
    const steps = tracked.steps;
    let last = steps[steps.length - 1];
    if (!last || last.t !== t) {
      last = { t, calls: 0, errors: 0, coldStarts: 0, containers: 0, latency: null };
      steps.push(last);
      const oldest = t - this.stepMs * (this.points - 1);
      while (steps.length > 0 && steps[0]!.t < oldest) steps.shift();
    }
    return last;
  }

  /** One answered call (an endpoint request, a task attempt's outcome); `failed`: an error answer. */
  call(stubId: string, seconds: number | undefined, failed: boolean, workspaceId?: string): void {
    const s = this.step(stubId, workspaceId);
    s.calls++;
    if (failed) s.errors++;
    if (seconds !== undefined && seconds >= 0) (s.latency ??= new Uint32Array(BOUNDS.length))[bucketOf(seconds)]!++;
  }

  coldStart(stubId: string, workspaceId?: string): void {
    this.step(stubId, workspaceId).coldStarts++;
  }

  /** Records how many containers each workload has now (called once a step). */
  sampleContainers(active: Iterable<Pick<ContainerRecord, "stubId"> & { workspaceId?: string }>): void {
    const counts = new Map<string, { n: number; workspaceId: string | undefined }>();
    for (const r of active) {
      if (r.stubId === null) continue;
      const c = counts.get(r.stubId);
      if (c) c.n += 1;
      else counts.set(r.stubId, { n: 1, workspaceId: r.workspaceId });
    }
    for (const [stubId, c] of counts) this.step(stubId, c.workspaceId).containers = c.n;
  }

  /** The workload's steps over the window, oldest first, with empty steps filled in. */
  get(stubId: string): SeriesPoint[] {
    const now = this.now();
    const last = now - (now % this.stepMs);
    const first = last - this.stepMs * (this.points - 1);
    const byT = new Map((this.stubs.get(stubId)?.steps ?? []).map((s) => [s.t, s] as const));
    const out: SeriesPoint[] = [];
    for (let t = first; t <= last; t += this.stepMs) {
      const s = byT.get(t);
      const total = s?.latency ? s.latency.reduce((a, b) => a + b, 0) : 0;
      out.push({
        t, calls: s?.calls ?? 0, errors: s?.errors ?? 0, coldStarts: s?.coldStarts ?? 0, containers: s?.containers ?? 0,
        p50: s?.latency && total > 0 ? percentile(s.latency, total, 0.5) : null,
        p99: s?.latency && total > 0 ? percentile(s.latency, total, 0.99) : null,
      });
    }
    return out;
  }

  get size(): number {
    return this.stubs.size;
  }
}
