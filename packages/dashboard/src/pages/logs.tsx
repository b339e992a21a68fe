/** Live logs of a deployment, task, container or sandbox: the last lines, then new ones as they come (bounded in the page). */
import { useEffect, useState } from "preact/hooks";
import { api, q, stream } from "../api.js";
import { short, useStickToBottom } from "../ui.js";

const KINDS = [["deployment", "deploymentId"], ["task", "taskId"], ["container", "containerId"], ["sandbox", "sandboxId"]] as const;
/** Lines kept on the page; older ones scroll away. */
const KEEP = 2000;

interface Line {
  seq: number;
  containerId: string;
  taskId: string | null;
  stream: string;
  line: string;
  at: number;
}

export function Logs({ params }: { params: URLSearchParams }) {
  const initial = KINDS.find(([k]) => params.get(k)) ?? KINDS[0];
  const [kind, setKind] = useState<string>(initial[0]);
  const [id, setId] = useState(params.get(initial[0]) ?? "");
  const [follow, setFollow] = useState(true);
  const [lines, setLines] = useState<Line[]>([]);
  const [state, setState] = useState("idle");
  const { ref, onScroll } = useStickToBottom<HTMLPreElement>(lines);
  const target = params.get(kind) ?? "";

  useEffect(() => {
    setLines([]);
    if (!target) return setState("idle");
    const param = KINDS.find(([k]) => k === kind)![1];
    const ac = new AbortController();
    setState(follow ? "following" : "loading");
    let pending: Line[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Lines are added in batches (one render per 100 ms), so a fast log does not render per line.
    const flush = () => {
      timer = undefined;
      const batch = pending;
      pending = [];
      setLines((old) => [...old, ...batch].slice(-KEEP));
    };
    const path = `/logs${q({ [param]: target, follow: follow ? "true" : undefined, limit: 500 })}`;
    const failed = (err: Error) => {
      if (!ac.signal.aborted) setState(`error: ${err.message}`);
    };
    if (!follow) {
      // Without follow the route answers the stored lines as JSON.
      api("GET", path, undefined, ac.signal).then((r) => {
        setLines(r.items);
        setState("loaded");
      }, failed);
      return () => ac.abort();
    }
    stream(path, (event, data) => {
      if (event === "log") {
        pending.push(data as Line);
        timer ??= setTimeout(flush, 100);
      } else if (event === "end") setState("ended");
    }, ac.signal).then(() => {
      flush();
      setState("ended");
    }, (err: Error) => {
      flush();
      failed(err);
    });
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
  }, [kind, target, follow]);

  const open = (e: Event) => {
    e.preventDefault();
    location.hash = `#/logs?${kind}=${encodeURIComponent(id.trim())}`;
  };
  return (
    <>
      <h1>Logs</h1>
      <form class="filters" onSubmit={open} aria-label="Choose logs">
        <label>Of <select name="kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
          {KINDS.map(([k]) => <option value={k}>{k}</option>)}
        </select></label>
        <label>Id <input name="id" value={id} size={38} required onInput={(e) => setId((e.target as HTMLInputElement).value)} /></label>
        <label class="check"><input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> Follow</label>
        <button type="submit" class="btn primary">Show</button>
      </form>
      <p class="muted small" role="status" data-log-state={state}>
        {target ? <>{kind} <code>{short(target)}</code>: {state}, {lines.length} lines{lines.length >= KEEP ? ` (the last ${KEEP})` : ""}</> : "Pick a deployment, task, container or sandbox (ids are on their pages)."}
      </p>
      <pre class="logs" ref={ref} onScroll={onScroll} tabIndex={0} aria-label="Log lines" aria-live="off">
        {lines.map((l) => (
          <div class={l.stream === "stderr" ? "ln err" : "ln"} key={l.seq}>
            <span class="ts">{new Date(l.at).toISOString().slice(11, 23)}</span> <span class="cid" title={l.containerId}>{short(l.containerId)}</span>{l.taskId ? <span class="tid" title={l.taskId}> {short(l.taskId)}</span> : null} {l.line}
          </div>
        ))}
      </pre>
    </>
  );
}
