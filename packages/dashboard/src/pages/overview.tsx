/** Overview: workers and machines with their CPU, memory, GPUs and containers, and the running containers; refreshed every few seconds. */
import { api, ApiError } from "../api.js";
import { ago, Badge, cpu, Loading, mib, Section, short, shortName, Table, useMe, useResource } from "../ui.js";

function pct(used: number, total: number): string {
  return total > 0 ? `${Math.round((used / total) * 100)}%` : "—";
}

function Meter({ used, total, label }: { used: number; total: number; label: string }) {
  const value = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return <meter min={0} max={100} value={value} aria-label={`${label} ${value}% used`} title={`${value}%`} />;
}

export function Overview() {
  const me = useMe();
  const workers = useResource(async (signal) => {
    try {
      return (await api("GET", "/worker", undefined, signal)).items as any[];
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) return null; // an admin-only view of the cluster
      throw err;
    }
  }, [], 3000);
  const machines = useResource(async (signal) => (await api("GET", "/machine?limit=200", undefined, signal)).items as any[], [], 3000);
  const containers = useResource(async (signal) => (await api("GET", "/container?active=true", undefined, signal)).items as any[], [], 3000);
  const running = containers.data?.filter((c) => c.state === "RUNNING").length ?? 0;

  return (
    <>
      <h1>Overview</h1>
      <ul class="stats" aria-label="Totals">
        <li><strong data-stat="workers">{workers.data?.length ?? "—"}</strong> workers</li>
        <li><strong data-stat="machines">{machines.data?.length ?? "—"}</strong> machines</li>
        <li><strong data-stat="containers">{containers.data?.length ?? "—"}</strong> containers ({running} running)</li>
      </ul>
      <Section title="Workers">
        {workers.data === null ? <p class="muted">Workers are shown to admin tokens; this is a {me.tokenType} token. Machines of this workspace are below.</p>
          : !workers.data ? <Loading error={workers.error} what="workers" />
          : <Table caption="Workers" empty="No worker is connected. `beta9 up` starts one; `beta9 worker` adds more." head={["Worker", "Pool", "CPU used", "Memory used", "GPUs", "Containers", "State"]}
              rows={workers.data.map((w) => {
                const usedCpu = w.capacity.cpuMillicores - w.free.cpuMillicores;
                const usedMem = w.capacity.memoryMiB - w.free.memoryMiB;
                return [
                  <span title={w.id}>{w.hostname} <span class="muted small">{shortName(w.id)}</span></span>, w.pool,
                  <span><Meter used={usedCpu} total={w.capacity.cpuMillicores} label="CPU" /> {cpu(usedCpu)} / {cpu(w.capacity.cpuMillicores)}</span>,
                  <span><Meter used={usedMem} total={w.capacity.memoryMiB} label="Memory" /> {mib(usedMem)} / {mib(w.capacity.memoryMiB)}</span>,
                  w.capacity.gpus.length ? w.capacity.gpus.map((g: any) => `${g.count}× ${g.type}`).join(", ") : "—",
                  w.containers, <Badge value={!w.connected ? "lost" : w.cordoned ? "cordoned" : "ready"} />,
                ];
              })} />}
      </Section>
      <Section title="Machines">
        {!machines.data ? <Loading error={machines.error} what="machines" />
          : <Table caption="Machines" empty="No machine has joined (see Machines & pools)." head={["Machine", "Pool", "State", "CPU", "Memory", "GPUs free", "Containers", "Seen"]}
              rows={machines.data.map((m) => [
                <span title={m.id}>{m.hostname ?? short(m.id)}</span>, m.pool,
                <Badge value={m.draining ? "draining" : m.cordoned ? "cordoned" : m.state} />,
                m.metrics ? <span><Meter used={m.metrics.cpuPercent} total={100} label="CPU" /> {Math.round(m.metrics.cpuPercent)}% of {cpu(m.cpuMillicores)}</span> : cpu(m.cpuMillicores),
                m.metrics ? <span><Meter used={m.metrics.memoryPercent} total={100} label="Memory" /> {Math.round(m.metrics.memoryPercent)}% of {mib(m.memoryMiB)}</span> : mib(m.memoryMiB),
                m.metrics ? `${m.metrics.gpus.free} / ${m.metrics.gpus.total}` : m.gpus.map((g: any) => `${g.count}× ${g.type}`).join(", ") || "—",
                m.runningContainers, ago(m.lastKeepaliveAt),
              ])} />}
      </Section>
      <Section title="Running containers">
        {!containers.data ? <Loading error={containers.error} what="containers" />
          : <Table caption="Containers" empty="No container is running." head={["Container", "Workload", "State", "Worker", "CPU", "Memory", "GPU", "Started", "Logs"]}
              rows={containers.data.map((c) => [
                <code>{short(c.id)}</code>, c.stubName ?? (c.stubId ? short(c.stubId) : "—"), <Badge value={c.state} />, c.workerId ?? "—",
                cpu(c.cpuMillicores), mib(c.memoryMiB), c.gpu ?? "—", ago(c.startedAt ?? c.createdAt),
                <a href={`#/logs?container=${encodeURIComponent(c.id)}`} aria-label={`Logs of container ${c.id}`}>logs</a>,
              ])} />}
        <p class="muted small">Cluster CPU in use: {workers.data ? pct(workers.data.reduce((a, w) => a + w.capacity.cpuMillicores - w.free.cpuMillicores, 0), workers.data.reduce((a, w) => a + w.capacity.cpuMillicores, 0)) : "—"}</p>
      </Section>
    </>
  );
}
