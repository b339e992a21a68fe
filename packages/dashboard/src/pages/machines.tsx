/** Machines and pools: state, hardware and last metrics; cordon, uncordon, drain and remove. */
import { api } from "../api.js";
import { Action, ago, Badge, cpu, Loading, mib, Section, short, Table, useResource } from "../ui.js";

export function Machines() {
  const pools = useResource(async (signal) => (await api("GET", "/pool?limit=1000", undefined, signal)).items as any[], []);
  const machines = useResource(async (signal) => (await api("GET", "/machine?limit=1000", undefined, signal)).items as any[], [], 3000);
  const act = (m: any, action: string) => () => api("POST", `/machine/${encodeURIComponent(m.id)}/${action}`);
  return (
    <>
      <h1>Machines &amp; pools</h1>
      <Section title="Machines">
        {!machines.data ? <Loading error={machines.error} what="machines" />
          : <Table caption="Machines" empty="No machine. `beta9 machine create --pool NAME` prints how to join one."
              head={["Machine", "Pool", "State", "Hardware", "Load", "Containers", "Agent", "Seen", ""]}
              rows={machines.data.map((m) => [
                <span title={m.id}>{m.hostname ?? <code>{short(m.id)}</code>}</span>, m.pool,
                <span><Badge value={m.state} />{m.cordoned && !m.draining && <Badge value="cordoned" />}{m.draining && <Badge value="draining" />}{!m.workerConnected && m.state === "ready" && <Badge value="disconnected" />}</span>,
                // A machine that has not registered yet has reported no hardware (zeros, not a tiny machine).
                m.state === "pending" && !m.cpuMillicores ? <span class="muted">not reported yet</span>
                  : `${cpu(m.cpuMillicores)}, ${mib(m.memoryMiB)}${m.gpus.length ? `, ${m.gpus.map((g: any) => `${g.count}× ${g.type}`).join(", ")}` : ""}`,
                m.metrics ? `CPU ${Math.round(m.metrics.cpuPercent)}%, mem ${Math.round(m.metrics.memoryPercent)}%, disk ${Math.round(m.metrics.diskPercent)}%, GPUs free ${m.metrics.gpus.free}/${m.metrics.gpus.total}` : "—",
                m.runningContainers, m.agentVersion ?? "—", ago(m.lastKeepaliveAt),
                <span class="row-actions">
                  {m.cordoned ? <Action label="Uncordon" name={m.hostname ?? m.id} run={act(m, "uncordon")} done={machines.reload} />
                    : <Action label="Cordon" name={m.hostname ?? m.id} run={act(m, "cordon")} done={machines.reload} />}
                  {!m.draining && <Action label="Drain" name={m.hostname ?? m.id} kind="danger" run={act(m, "drain")} confirm={`Drain ${m.hostname ?? m.id}? Its containers stop and their work moves elsewhere.`} done={machines.reload} />}
                  <Action label="Remove" name={m.hostname ?? m.id} kind="danger" run={() => api("DELETE", `/machine/${encodeURIComponent(m.id)}`)} confirm={`Remove machine ${m.hostname ?? m.id}? Its token is revoked.`} done={machines.reload} />
                </span>,
              ])} />}
      </Section>
      <Section title="Pools">
        {!pools.data ? <Loading error={pools.error} what="pools" />
          : <Table caption="Pools" empty="No pool." head={["Pool", "Description", "Machines", "Created"]}
              rows={pools.data.map((p) => [p.name, p.description || "—", machines.data?.filter((m) => m.pool === p.name).length ?? "—", ago(p.createdAt)])} />}
      </Section>
    </>
  );
}
