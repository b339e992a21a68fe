/** Sandboxes: list, terminate, and run a command in one (its output streamed back). */
import { useState } from "preact/hooks";
import { api, ndjson } from "../api.js";
import { Action, ago, Badge, inFuture, Loading, Section, short, Table, useMe, useResource } from "../ui.js";

/** `ls -la /tmp` → cmd and args; quotes group words ("a b" is one argument). */
function split(command: string): string[] {
  return [...command.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The output so far, ending in a newline when it has any, so a status line starts a line of its own. */
const nl = (o: string): string => (o === "" || o.endsWith("\n") ? o : `${o}\n`);

function Exec({ sandbox }: { sandbox: any }) {
  const [command, setCommand] = useState("uname -a");
  const [out, setOut] = useState("");
  const [busy, setBusy] = useState(false);
  const run = async (e: Event) => {
    e.preventDefault();
    const [cmd, ...args] = split(command);
    if (!cmd) return;
    setBusy(true);
    setOut("");
    const ac = new AbortController();
    try {
      await ndjson(`/sandbox/${encodeURIComponent(sandbox.id)}/exec`, { cmd, args }, (item) => {
        if (item.type === "stdout" || item.type === "stderr") setOut((o) => (o + item.data).slice(-100_000));
        else if (item.type === "exit") setOut((o) => `${nl(o)}[exit ${item.exitCode ?? item.signal}]`);
        else if (item.type === "error") setOut((o) => `${nl(o)}[error ${item.message ?? JSON.stringify(item)}]`);
      }, ac.signal);
    } catch (err) {
      setOut((o) => `${nl(o)}[${(err as Error).message}]`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="exec" onSubmit={run} aria-label={`Run a command in sandbox ${sandbox.id}`}>
      <label><span>Command in <code>{short(sandbox.id)}</code></span> <input name="command" value={command} size={40} onInput={(e) => setCommand((e.target as HTMLInputElement).value)} /></label>
      <button type="submit" class="btn primary" data-mutates="true" disabled={busy}>{busy ? "Running…" : "Run"}</button>
      {out && <pre class="logs short" tabIndex={0} aria-label="Command output" aria-live="polite">{out}</pre>}
    </form>
  );
}

export function Sandboxes() {
  const me = useMe();
  const [active, setActive] = useState(true);
  const [execIn, setExecIn] = useState<string | null>(null);
  const list = useResource(async (signal) => (await api("GET", `/sandbox?limit=200${active ? "&active=true" : ""}`, undefined, signal)).items as any[], [active], 3000);
  const chosen = list.data?.find((s) => s.id === execIn && s.state === "RUNNING");
  return (
    <>
      <h1>Sandboxes</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter sandboxes">
        <label class="check"><input type="checkbox" checked={active} onChange={(e) => setActive((e.target as HTMLInputElement).checked)} /> Only active</label>
      </form>
      <Section title="Sandboxes">
        {!list.data ? <Loading error={list.error} what="sandboxes" />
          : <Table caption="Sandboxes" empty={active ? "No active sandbox. Create one with the SDK: `await new Sandbox().create()`." : "No sandbox. Create one with the SDK: `await new Sandbox().create()`."}
              head={["Sandbox", "State", "CPU / memory", "Exposed", "Expires", "Created", "Logs", ""]}
              rows={list.data.map((s) => [
                <code title={s.id}>{short(s.id)}</code>, <Badge value={s.state} />, `${s.cpuMillicores}m / ${s.memoryMiB} MiB`,
                s.exposed.map((p: any) => p.port).join(", ") || "—", s.expiresAt ? inFuture(s.expiresAt) : "never", ago(s.createdAt),
                <a href={`#/logs?sandbox=${s.id}`}>logs</a>,
                s.state === "TERMINATED" ? "" : <span class="row-actions">
                  {me.canWrite && s.state === "RUNNING" && <button type="button" class="btn secondary" data-mutates="true" onClick={() => setExecIn(s.id)} aria-label={`Exec in ${s.id}`}>Exec</button>}
                  <Action label="Terminate" name={s.id} kind="danger" run={() => api("POST", `/sandbox/${encodeURIComponent(s.id)}/terminate`)} confirm={`Terminate sandbox ${s.id}?`} done={list.reload} />
                </span>,
              ])} />}
      </Section>
      {chosen && me.canWrite && <Section title="Exec"><Exec sandbox={chosen} /></Section>}
    </>
  );
}
