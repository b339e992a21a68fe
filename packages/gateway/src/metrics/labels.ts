/**
 * The labels that name a workload in every per-workload series: `workspace` (its name), `workload`
 * (the stub's name, which every version of a deployment shares) and `kind` (the stub type, e.g.
 * endpoint/deployment; `sandbox` or `container` for containers of no stub, whose workload is "").
 *
 * Cardinality is bounded: the first `max` distinct (workspace, workload, kind) triples get series of
 * their own; every later one is counted under workspace="_other", workload="_other" (same kind),
 * so a cluster with many workspaces or throwaway names cannot grow /metrics without limit. Names
 * are looked up once per stub or workspace and cached; an observation whose names are not known
 * yet is applied when they are.
 */
import type { Stub } from "@beta9/protocol";

export interface WorkloadLabelValues {
  workspace: string;
  workload: string;
  kind: string;
}

export const OTHER = "_other";
export const DEFAULT_MAX_WORKLOADS = 500;

export interface LabelLookup {
  stub(id: string): Promise<Pick<Stub, "name" | "type" | "workspaceId"> | undefined>;
  workspaceName(id: string): Promise<string | undefined>;
}

/** BETA9_METRICS_MAX_WORKLOADS, or the default. */
export function maxWorkloadsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.BETA9_METRICS_MAX_WORKLOADS?.trim();
  if (!raw) return DEFAULT_MAX_WORKLOADS;
  if (!/^[0-9]{1,7}$/.test(raw)) throw new Error(`BETA9_METRICS_MAX_WORKLOADS=${JSON.stringify(raw)} is not valid: expected a whole number`);
  return Number(raw);
}

export class WorkloadLabels {
  /** By stub id, or by `workspaceId kind` for containers of no stub. */
  private readonly known = new Map<string, WorkloadLabelValues>();
  private readonly pending = new Map<string, Promise<WorkloadLabelValues>>();
  private readonly triples = new Set<string>();

  constructor(private readonly lookup: LabelLookup, readonly max = DEFAULT_MAX_WORKLOADS) {}

  /** The labels of a stub's workload. */
  ofStub(stubId: string): Promise<WorkloadLabelValues> {
    return this.resolve(stubId, async () => {
      const stub = await this.lookup.stub(stubId);
      if (!stub) return { workspace: OTHER, workload: OTHER, kind: "unknown" };
      return { workspace: await this.workspaceName(stub.workspaceId), workload: stub.name, kind: stub.type };
    });
  }

  /** The labels of a container that runs no stub (a sandbox, a plain container). */
  ofWorkspace(workspaceId: string, kind: "sandbox" | "container"): Promise<WorkloadLabelValues> {
    return this.resolve(`${workspaceId} ${kind}`, async () => ({ workspace: await this.workspaceName(workspaceId), workload: "", kind }));
  }

  /** Calls `fn` with the labels: at once when known, else once looked up (a failed lookup drops it). */
  with(stubId: string, fn: (labels: WorkloadLabelValues) => void): void {
    const labels = this.known.get(stubId);
    if (labels) fn(labels);
    else void this.ofStub(stubId).then(fn, () => undefined);
  }

  private async workspaceName(id: string): Promise<string> {
    return (await this.lookup.workspaceName(id).catch(() => undefined)) ?? id;
  }

  private resolve(key: string, find: () => Promise<WorkloadLabelValues>): Promise<WorkloadLabelValues> {
    const labels = this.known.get(key);
    if (labels) return Promise.resolve(labels);
    let pending = this.pending.get(key);
    if (!pending) {
      pending = find().then((found) => {
        const bounded = this.bound(found);
        this.known.set(key, bounded);
        return bounded;
      }).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  private bound(labels: WorkloadLabelValues): WorkloadLabelValues {
    const triple = `${labels.workspace}\u0000${labels.workload}\u0000${labels.kind}`;
    if (this.triples.has(triple)) return labels;
    if (this.triples.size >= this.max) return { workspace: OTHER, workload: OTHER, kind: labels.kind };
    this.triples.add(triple);
    return labels;
  }
}
