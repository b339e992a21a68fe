/**
 * Per-workload series (labels.ts says how they are named and bounded): endpoint requests and their
 * latency, cold starts, queue depth, containers by state, task outcomes and durations, and the
 * scheduler's placements, waits for capacity and failures.
 *
 * Nothing here runs per request but `observeRequest` (request-series.ts: two map lookups and a
 * bucket search once a workload's names are known). Everything else comes from events the
 * scheduler, autoscaler and dispatcher emit anyway, or is read from their live state when
 * /metrics is scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { TaskDispatcher } from "../tasks/dispatcher.js";
import type { Autoscaler } from "../workloads/autoscaler.js";
import type { WorkloadLabels, WorkloadLabelValues } from "./labels.js";
import { RequestSeries } from "./request-series.js";

const LABELS = ["workspace", "workload", "kind"] as const;
/** Container exits the platform counts as failures (not "exited", which is the command's own end, nor "stopped"). */
const FAILURE_REASONS = new Set(["failed", "oom", "worker_lost", "unschedulable"]);

export interface WorkloadMetricsDeps {
  registry: Registry;
  labels: WorkloadLabels;
  scheduler: Scheduler;
  autoscaler: Autoscaler;
  dispatcher: TaskDispatcher;
}

export interface WorkloadMetrics {
  /** One answered call of an endpoint: its HTTP status and time in seconds. */
  observeRequest(stubId: string, status: number, seconds: number): void;
  close(): void;
}

export function workloadMetrics({ registry, labels, scheduler, autoscaler, dispatcher }: WorkloadMetricsDeps): WorkloadMetrics {
  const registers = [registry];
  const requests = new RequestSeries(registry, { requests: "beta9_workload_requests_total", duration: "beta9_workload_request_duration_seconds" },
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  const coldStarts = new Counter({ name: "beta9_workload_cold_starts_total", help: "Containers started for a workload that became ready (answered /health)", labelNames: LABELS, registers });
  const coldStartSeconds = new Histogram({
    name: "beta9_workload_cold_start_duration_seconds", help: "From a workload container's request to its runner answering /health", labelNames: LABELS,
    buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300], registers,
  });
  const tasks = new Counter({ name: "beta9_workload_tasks_total", help: "Task attempts' outcomes (RETRY: an attempt failed and will run again), by workload", labelNames: [...LABELS, "status"], registers });
  const taskSeconds = new Histogram({
    name: "beta9_workload_task_duration_seconds", help: "From a task attempt's start to its outcome, by workload and outcome", labelNames: [...LABELS, "status"],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600], registers,
  });
  const placements = new Counter({ name: "beta9_scheduler_placements_total", help: "Containers placed on a worker, by workload", labelNames: LABELS, registers });
  const workerPlacements = new Counter({ name: "beta9_worker_placements_total", help: "Containers placed, by worker", labelNames: ["worker"], registers });
  const waits = new Counter({ name: "beta9_scheduler_capacity_waits_total", help: "Container requests that found no room and waited for capacity, by workload", labelNames: LABELS, registers });
  const waitSeconds = new Histogram({
    name: "beta9_scheduler_capacity_wait_seconds", help: "How long a request that waited for capacity waited until placed", labelNames: LABELS,
    buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600], registers,
  });
  const failures = new Counter({
    name: "beta9_scheduler_failures_total", help: "Containers that ended failed, oom, worker_lost or unschedulable, by workload and reason", labelNames: [...LABELS, "reason"], registers,
  });

  const ofRecord = (r: ContainerRecord): Promise<WorkloadLabelValues> =>
    r.stubId !== null ? labels.ofStub(r.stubId) : labels.ofWorkspace(r.workspaceId, r.request.daemon === "sandbox" ? "sandbox" : "container");
  const whenLabelled = (r: ContainerRecord, fn: (l: WorkloadLabelValues) => void) => void ofRecord(r).then(fn, () => undefined);

  new Gauge({
    name: "beta9_workload_queue_depth", help: "Work waiting to start: queued tasks (task queues, functions), calls waiting for a slot (endpoints)", labelNames: LABELS, registers,
    async collect() {
      this.reset();
      const depth = new Map<string, number>(dispatcher.queued());
      for (const [stubId, n] of autoscaler.waiting()) if (!depth.has(stubId)) depth.set(stubId, n); // a queue's attempts wait there too: not counted twice
      for (const [stubId, n] of depth) this.inc(await labels.ofStub(stubId), n);
    },
  });
  new Gauge({
    name: "beta9_workload_containers", help: "Containers not yet exited, by workload and state", labelNames: [...LABELS, "state"], registers,
    async collect() {
      this.reset();
      for (const r of scheduler.containers.list({ active: true })) this.inc({ ...(await ofRecord(r)), state: r.state });
    },
  });

  const waitingSince = new Map<string, number>();
  const onWaiting = (containerId: string) => {
    const r = scheduler.containers.get(containerId);
    if (!r) return;
    waitingSince.set(containerId, Date.now());
    whenLabelled(r, (l) => waits.inc(l));
  };
  const onPlaced = ({ containerId, workerId }: { containerId: string; workerId: string }) => {
    workerPlacements.inc({ worker: workerId });
    const r = scheduler.containers.get(containerId);
    if (!r) return;
    const since = waitingSince.get(containerId);
    waitingSince.delete(containerId);
    whenLabelled(r, (l) => {
      placements.inc(l);
      if (since !== undefined) waitSeconds.observe(l, (Date.now() - since) / 1000);
    });
  };
  scheduler.events.on("waiting", onWaiting);
  scheduler.events.on("placed", onPlaced);
  const stopExits = scheduler.containers.subscribe("*", (e) => {
    if (e.kind !== "state" || e.container.state !== "EXITED") return;
    const r = e.container;
    waitingSince.delete(r.id);
    if (r.reason && FAILURE_REASONS.has(r.reason)) whenLabelled(r, (l) => failures.inc({ ...l, reason: r.reason! }));
  });
  const stopReady = autoscaler.onContainerReady((stub, containerId) => {
    const r = scheduler.containers.get(containerId);
    const seconds = r ? (Date.now() - r.createdAt) / 1000 : undefined;
    labels.with(stub.id, (l) => {
      coldStarts.inc(l);
      if (seconds !== undefined) coldStartSeconds.observe(l, seconds);
    });
  });
  const stopOutcomes = dispatcher.onOutcome((stubId, status, startedAt) => {
    const seconds = startedAt === null ? undefined : (Date.now() - Date.parse(startedAt)) / 1000;
    labels.with(stubId, (l) => {
      tasks.inc({ ...l, status });
      if (seconds !== undefined && seconds >= 0) taskSeconds.observe({ ...l, status }, seconds);
    });
  });

  return {
    observeRequest(stubId, status, seconds) {
      if (requests.has(stubId)) requests.observe(stubId, undefined, status, seconds);
      else labels.with(stubId, (l) => requests.observe(stubId, l, status, seconds));
    },
    close() {
      scheduler.events.off("waiting", onWaiting);
      scheduler.events.off("placed", onPlaced);
      stopExits();
      stopReady();
      stopOutcomes();
    },
  };
}
