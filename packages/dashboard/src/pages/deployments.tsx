/** Deployments, grouped by name with their versions; one deployment's charts, versions and actions. */
import { api, q } from "../api.js";
import { Action, ago, Badge, Chart, Loading, Section, short, Table, useResource } from "../ui.js";

export function Deployments() {
  const list = useResource(async (signal) => (await api("GET", "/deployment?limit=1000", undefined, signal)).items as any[], [], 5000);
  if (!list.data) return <><h1>Deployments</h1><Loading error={list.error} what="deployments" /></>;
  const byName = new Map<string, any[]>();
  for (const d of list.data) byName.set(d.name, [...(byName.get(d.name) ?? []), d]);
  return (
    <>
      <h1>Deployments</h1>
      <Section title="By name">
        <Table caption="Deployments" empty="Nothing is deployed yet: `beta9 deploy app.ts:handler`."
          head={["Name", "Type", "Latest", "Versions", "State", "Updated"]}
          rows={[...byName].map(([name, versions]) => {
            const latest = versions.reduce((a, b) => (b.version > a.version ? b : a));
            return [
              <a href={`#/deployments/${latest.id}`} data-deployment={name}>{name}</a>, latest.stubType, `v${latest.version}`,
              versions.sort((a, b) => b.version - a.version).map((v) => <a class="chip" href={`#/deployments/${v.id}`} aria-label={`${name} version ${v.version}`}>v{v.version}</a>),
              <Badge value={latest.active ? "active" : "stopped"} />, ago(latest.updatedAt),
            ];
          })} />
      </Section>
    </>
  );
}

export function DeploymentDetail({ id }: { id: string }) {
  const dep = useResource(async (signal) => api("GET", `/deployment/${encodeURIComponent(id)}`, undefined, signal), [id], 5000);
  const versions = useResource(async (signal) => dep.data
    ? (await api("GET", `/deployment${q({ name: dep.data.name, limit: 100 })}`, undefined, signal)).items as any[] : [], [dep.data?.name]);
  const series = useResource(async (signal) => api("GET", `/deployment/${encodeURIComponent(id)}/series`, undefined, signal), [id], 3000);
  if (!dep.data) return <><h1>Deployment</h1><Loading error={dep.error} what="the deployment" /></>;
  const d = dep.data;
  const pts: any[] = series.data?.points ?? [];
  const step = series.data?.stepSeconds ?? 10;
  const post = (action: string) => () => api("POST", `/deployment/${encodeURIComponent(d.id)}/${action}`);
  return (
    <>
      <p class="crumbs"><a href="#/deployments">Deployments</a> / {d.name}</p>
      <h1>{d.name} <span class="muted">v{d.version}</span> <Badge value={d.active ? "active" : "stopped"} /></h1>
      <div class="toolbar">
        {d.active ? <Action label="Stop" name={d.name} run={post("stop")} confirm={`Stop ${d.name} v${d.version}? Its containers stop.`} done={dep.reload} />
          : <Action label="Start" name={d.name} run={post("start")} done={dep.reload} />}
        <Action label="Restart" name={d.name} run={post("restart")} confirm={`Replace the containers of ${d.name}?`} done={dep.reload} />
        <Action label="Delete" name={d.name} kind="danger" run={() => api("DELETE", `/deployment/${encodeURIComponent(d.id)}`)} confirm={`Delete ${d.name} v${d.version}? The version number stays taken.`} done={() => (location.hash = "#/deployments")} />
        <a class="btn secondary" href={`#/logs?deployment=${encodeURIComponent(d.id)}`}>Logs</a>
        <a class="btn secondary" href={`#/tasks?deployment=${encodeURIComponent(d.name)}`}>Tasks</a>
      </div>
      <dl class="facts">
        <dt>Type</dt><dd>{d.stubType}</dd><dt>Id</dt><dd><code>{d.id}</code></dd><dt>Stub</dt><dd><code>{short(d.stubId)}</code></dd>
        <dt>Created</dt><dd>{ago(d.createdAt)}</dd>
        {d.stubType.startsWith("endpoint/") && <><dt>Call</dt><dd><code>POST /endpoint/{d.name}/v{d.version}</code></dd></>}
      </dl>
      <Section title="Last 30 minutes">
        {!series.data ? <Loading error={series.error} what="series" /> : (
          <div class="charts">
            <Chart title="Calls" stepSeconds={step} series={[{ label: "calls", values: pts.map((p) => p.calls) }, { label: "errors", values: pts.map((p) => p.errors) }]} />
            <Chart title="Latency" stepSeconds={step} series={[{ label: "p50", unit: " s", values: pts.map((p) => p.p50) }, { label: "p99", unit: " s", values: pts.map((p) => p.p99) }]} />
            <Chart title="Cold starts" stepSeconds={step} series={[{ label: "cold starts", values: pts.map((p) => p.coldStarts) }]} />
            <Chart title="Containers" stepSeconds={step} series={[{ label: "containers", values: pts.map((p) => p.containers) }]} />
          </div>
        )}
        <p class="muted small">One point per {step} s. Calls are endpoint requests and task attempts; errors are 5xx answers and failed attempts.</p>
      </Section>
      <Section title="Versions">
        {!versions.data ? <Loading error={versions.error} what="versions" />
          : <Table caption="Versions" empty="No other version." head={["Version", "State", "Created", ""]}
              rows={versions.data.map((v) => [`v${v.version}`, <Badge value={v.active ? "active" : "stopped"} />, ago(v.createdAt),
                v.id === d.id ? <span class="muted">shown</span> : <a href={`#/deployments/${v.id}`}>open</a>])} />}
      </Section>
    </>
  );
}
