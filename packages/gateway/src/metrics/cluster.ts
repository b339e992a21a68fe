/**
 * Cluster-wide series, read from live state when /metrics is scraped (nothing to keep in step):
 * each worker's capacity (from its hello) against what the scheduler reserved on it, its
 * connection and containers; containers by state; and the log store's counters. Worker labels are
 * bounded by the cluster's size. Machines' own utilisation (their agents' keepalives) is in
 * api/machines.ts, beside the route that receives it.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { LogStore } from "../logs/types.js";
import type { Scheduler } from "../scheduler/scheduler.js";

const MIB = 1024 * 1024;

export function clusterMetrics(registry: Registry, scheduler: Scheduler, logs: LogStore | undefined): void {
  const registers = [registry];
  const perWorker = (name: string, help: string, value: (w: ReturnType<Scheduler["listWorkers"]>[number]) => number) => new Gauge({
    name, help, labelNames: ["worker", "pool"] as const, registers,
    collect() {
      this.reset();
      for (const w of scheduler.listWorkers()) this.set({ worker: w.id, pool: w.pool }, value(w));
    },
  });
  perWorker("beta9_worker_connected", "1 while the worker's connection is open", (w) => (w.connected ? 1 : 0));
  perWorker("beta9_worker_cordoned", "1 while the worker takes no new containers", (w) => (w.cordoned ? 1 : 0));
  perWorker("beta9_worker_cpu_capacity_cores", "CPU the worker offers (its hello)", (w) => w.capacity.cpuMillicores / 1000);
  perWorker("beta9_worker_cpu_reserved_cores", "CPU reserved by the containers placed on it", (w) => w.reserved.cpuMillicores / 1000);
  perWorker("beta9_worker_memory_capacity_bytes", "Memory the worker offers (its hello)", (w) => w.capacity.memoryMiB * MIB);
  perWorker("beta9_worker_memory_reserved_bytes", "Memory reserved by the containers placed on it", (w) => w.reserved.memoryMiB * MIB);
  perWorker("beta9_worker_containers", "Containers on the worker not yet exited", (w) => w.containers);
  perWorker("beta9_worker_last_seen_seconds", "Seconds since the worker's last message (keepalives every few seconds)", (w) => (Date.now() - w.lastSeenAt) / 1000);
  for (const [name, help, reserved] of [
    ["beta9_worker_gpus", "GPUs the worker offers, by type", false],
    ["beta9_worker_gpus_reserved", "GPUs reserved by the containers placed on it, by type", true],
  ] as const) {
    new Gauge({
      name, help, labelNames: ["worker", "pool", "gpu_type"] as const, registers,
      collect() {
        this.reset();
        for (const w of scheduler.listWorkers()) {
          for (const g of w.capacity.gpus) this.set({ worker: w.id, pool: w.pool, gpu_type: g.type }, reserved ? (w.reserved.gpus[g.type] ?? 0) : g.count);
        }
      },
    });
  }
  new Gauge({
    name: "beta9_containers", help: "Containers not yet exited, by state", labelNames: ["state"] as const, registers,
    collect() {
      const counts: Record<string, number> = { PENDING: 0, RUNNING: 0, STOPPING: 0 };
      for (const r of scheduler.containers.list({ active: true })) counts[r.state] = (counts[r.state] ?? 0) + 1;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "beta9_scheduler_unplaced_containers", help: "Containers waiting for a worker with room (the scheduler's backlog)", registers,
    collect() {
      this.set(scheduler.containers.list({ active: true }).filter((r) => r.workerId === null).length);
    },
  });
  if (!logs) return;
  // Counters kept by the store, copied at scrape time.
  const fromStats = (name: string, help: string, read: (s: ReturnType<LogStore["stats"]>) => number) => new Counter({
    name, help, registers,
    collect() {
      this.reset();
      this.inc(read(logs.stats()));
    },
  });
  fromStats("beta9_logs_lines_total", "Container log lines accepted by the log store", (s) => s.lines);
  fromStats("beta9_logs_bytes_total", "Bytes of those lines (text plus a per-line overhead)", (s) => s.bytes);
  fromStats("beta9_logs_dropped_lines_total", "Log lines lost: buffered past the memory bound, or a failed write", (s) => s.dropped);
  fromStats("beta9_logs_flushes_total", "Log store writes (one transaction each, on the writer thread)", (s) => s.flushes);
  fromStats("beta9_logs_flush_seconds_total", "Time the gateway's event loop spent preparing log writes (encoding; the writes run on their own thread)", (s) => s.flushSeconds);
  new Counter({
    name: "beta9_logs_pruned_lines_total", help: "Log lines deleted by retention: age, a container's bound, the total bound", labelNames: ["reason"] as const, registers,
    collect() {
      this.reset();
      const { pruned } = logs.stats();
      for (const reason of ["age", "container", "total"] as const) this.inc({ reason }, pruned[reason]);
    },
  });
}
