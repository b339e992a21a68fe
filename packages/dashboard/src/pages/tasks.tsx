/** Tasks: the newest ones, filtered by the gateway by status and deployment; one task's input, result and error, with cancel and retry. */
import { useState } from "preact/hooks";
import { api, q } from "../api.js";
import { Action, ago, Badge, Json, Loading, Section, short, Table, useResource } from "../ui.js";

const STATUSES = ["PENDING", "RUNNING", "RETRY", "COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"];
const TERMINAL = new Set(["COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"]);
/** Rows shown: the newest tasks that match (the gateway filters, so older matches are not hidden behind newer non-matches). */
const SHOWN = 200;

const took = (t: any): string => {
  if (!t.startedAt) return "—";
  const ms = (t.endedAt ? Date.parse(t.endedAt) : Date.now()) - Date.parse(t.startedAt);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
};

const cancel = (id: string) => () => api("POST", `/task/${encodeURIComponent(id)}/cancel`);

export function Tasks({ params }: { params: URLSearchParams }) {
  const [status, setStatus] = useState(params.get("status") ?? "");
  // "workload" is the older name of the parameter (links from the deployments page).
  const [deployment, setDeployment] = useState(params.get("deployment") ?? params.get("workload") ?? "");
  const choose = (next: { status?: string; deployment?: string }) => {
    const s = next.status ?? status;
    const d = next.deployment ?? deployment;
    setStatus(s);
    setDeployment(d);
    // The filters stay in the address (shareable, kept on reload) without a navigation.
    history.replaceState(null, "", `#/tasks${q({ status: s, deployment: d })}`);
  };
  const list = useResource(async (signal) => (await api("GET", `/task${q({ limit: SHOWN, status, deployment })}`, undefined, signal)).items as any[], [status, deployment], 3000);
  const deployments = useResource(async (signal) => (await api("GET", "/deployment?limit=1000", undefined, signal)).items as any[], [], 30_000);
  const names = [...new Set([...(deployments.data ?? []).map((d) => d.name as string), ...(deployment ? [deployment] : [])])].sort();
  const shown = list.data ?? [];
  return (
    <>
      <h1>Tasks</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter tasks">
        <label>Status <select name="status" value={status} onChange={(e) => choose({ status: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option>{STATUSES.map((s) => <option value={s}>{s}</option>)}
        </select></label>
        <label>Deployment <select name="workload" value={deployment} onChange={(e) => choose({ deployment: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option>{names.map((n) => <option value={n}>{n}</option>)}
        </select></label>
        <span class="muted small" aria-live="polite">{list.data ? (shown.length < SHOWN ? `${shown.length} matching` : `the newest ${SHOWN} matching`) : ""}</span>
      </form>
      <Section title="Tasks">
        {!list.data ? <Loading error={list.error} what="tasks" />
          : <Table caption="Tasks" empty={status || deployment ? "No task matches these filters." : "No tasks yet: put one on a task queue or call a function."}
              head={["Task", "Workload", "Status", "Attempts", "Created", "Took", ""]}
              rows={shown.map((t) => [
                <a href={`#/tasks/${t.id}`} data-task={t.id}><code>{short(t.id)}</code></a>, t.stubName ?? short(t.stubId), <Badge value={t.status} />,
                `${t.retries + 1}/${t.maxRetries + 1}`, ago(t.createdAt), took(t),
                TERMINAL.has(t.status) ? "" : <Action label="Cancel" name={t.id} kind="danger" run={cancel(t.id)} confirm={`Cancel task ${t.id}?`} done={list.reload} />,
              ])} />}
      </Section>
    </>
  );
}

export function TaskDetail({ id }: { id: string }) {
  const task = useResource(async (signal) => api("GET", `/task/${encodeURIComponent(id)}`, undefined, signal), [id], 2000);
  const input = useResource(async (signal) => (await api("GET", `/task/${encodeURIComponent(id)}/input`, undefined, signal)).input, [id]);
  const [retried, setRetried] = useState<string | null>(null);
  if (!task.data) return <><h1>Task</h1><Loading error={task.error} what="the task" /></>;
  const t = task.data;
  return (
    <>
      <p class="crumbs"><a href="#/tasks">Tasks</a> / {short(t.id)}</p>
      <h1>Task <code>{short(t.id)}</code> <Badge value={t.status} /></h1>
      <div class="toolbar">
        {!TERMINAL.has(t.status) && <Action label="Cancel" name={t.id} kind="danger" run={cancel(t.id)} confirm={`Cancel task ${t.id}?`} done={task.reload} />}
        {TERMINAL.has(t.status) && <Action label="Retry" name={t.id} run={async () => setRetried((await api("POST", `/task/${encodeURIComponent(t.id)}/retry`)).task_id)} />}
        <a class="btn secondary" href={`#/logs?task=${encodeURIComponent(t.id)}`}>Logs</a>
        {retried && <span role="status">New task: <a href={`#/tasks/${retried}`}>{short(retried)}</a></span>}
      </div>
      <dl class="facts">
        <dt>Id</dt><dd><code>{t.id}</code></dd><dt>Workload</dt><dd>{t.stubName ?? t.stubId}</dd>
        <dt>Attempts</dt><dd>{t.retries + 1} of at most {t.maxRetries + 1}</dd><dt>Container</dt><dd>{t.containerId ? <a href={`#/logs?container=${t.containerId}`}><code>{short(t.containerId)}</code></a> : "—"}</dd>
        <dt>Created</dt><dd>{ago(t.createdAt)}</dd><dt>Took</dt><dd>{took(t)}</dd>
        {t.waiting && <><dt>Waiting</dt><dd>{t.waiting.message}</dd></>}
      </dl>
      <div class="cols">
        <Section title="Input">{input.data === undefined ? <Loading error={input.error} what="the input" /> : <Json value={input.data} label="Task input" />}</Section>
        <Section title="Result">{t.status === "COMPLETE" ? <Json value={t.result} label="Task result" />
          : <p class="muted">{TERMINAL.has(t.status) ? `None: the task ended ${t.status}.` : "None yet: the task has not ended."}</p>}</Section>
      </div>
      {t.error && <Section title="Error"><pre class="json err" tabIndex={0} aria-label="Task error">{t.error}</pre></Section>}
    </>
  );
}
