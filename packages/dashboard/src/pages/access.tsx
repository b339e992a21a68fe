/** Tokens and secrets: names, types and dates only. A secret's value is written, never read back; a token's key is shown once, when made. */
import { useState } from "preact/hooks";
import { api, ApiError } from "../api.js";
import { Action, ago, Badge, Loading, Section, Table, useMe, useResource } from "../ui.js";

function NewToken({ done }: { done: () => void }) {
  const me = useMe();
  const [type, setType] = useState("restricted");
  const [name, setName] = useState("");
  const [key, setKey] = useState<string | null>(null);
  const [msg, setMsg] = useState<string | null>(null);
  if (!me.canWrite) return null;
  const submit = async (e: Event) => {
    e.preventDefault();
    setMsg(null);
    try {
      const t = await api("POST", "/token", { type, ...(name && { name }) });
      setKey(t.key);
      setName("");
      done();
    } catch (err) {
      setMsg((err as Error).message);
    }
  };
  return (
    <form class="filters" onSubmit={submit} aria-label="Create a token">
      <label>Type <select value={type} onChange={(e) => setType((e.target as HTMLSelectElement).value)}>
        <option value="restricted">restricted (read only)</option><option value="workspace">workspace</option>
      </select></label>
      <label>Name <input value={name} maxLength={64} onInput={(e) => setName((e.target as HTMLInputElement).value)} /></label>
      <button type="submit" class="btn primary" data-mutates="true">Create token</button>
      {key && <p role="status">Copy the key now, it is not shown again: <input readOnly value={key} aria-label="New token key" size={50} onFocus={(e) => (e.target as HTMLInputElement).select()} /></p>}
      {msg && <p role="alert" class="error">{msg}</p>}
    </form>
  );
}

function NewSecret({ done }: { done: () => void }) {
  const me = useMe();
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [msg, setMsg] = useState<string | null>(null);
  if (!me.canWrite) return null;
  const submit = async (e: Event) => {
    e.preventDefault();
    setMsg(null);
    try {
      await api("POST", "/secret", { name, value });
      setName("");
      setValue("");
      done();
    } catch (err) {
      // An existing name: change its value instead.
      if (err instanceof ApiError && err.status === 409) {
        await api("PUT", `/secret/${encodeURIComponent(name)}`, { value }).then(() => { setValue(""); done(); }, (e2: Error) => setMsg(e2.message));
      } else setMsg((err as Error).message);
    }
  };
  return (
    <form class="filters" onSubmit={submit} aria-label="Set a secret">
      <label>Name <input value={name} required pattern="[A-Za-z_][A-Za-z0-9_]*" onInput={(e) => setName((e.target as HTMLInputElement).value)} /></label>
      <label>Value <input type="password" value={value} required autoComplete="off" onInput={(e) => setValue((e.target as HTMLInputElement).value)} /></label>
      <button type="submit" class="btn primary" data-mutates="true">Set secret</button>
      {msg && <p role="alert" class="error">{msg}</p>}
    </form>
  );
}

export function Access() {
  const me = useMe();
  const tokens = useResource(async (signal) => (me.canWrite ? (await api("GET", "/token?limit=1000", undefined, signal)).items as any[] : null), []);
  const secrets = useResource(async (signal) => (await api("GET", "/secret?limit=1000", undefined, signal)).items as any[], []);
  return (
    <>
      <h1>Tokens &amp; secrets</h1>
      <Section title="Tokens">
        {tokens.data === null ? <p class="muted">Tokens are listed to workspace and admin tokens; this one is {me.tokenType}.</p>
          : !tokens.data ? <Loading error={tokens.error} what="tokens" />
          : <Table caption="Tokens" empty="No token." head={["Name", "Type", "Key starts", "State", "Created", ""]}
              rows={tokens.data.map((t) => [
                t.name ?? "—", t.type, <code>{t.prefix}…</code>, <Badge value={t.active ? "active" : "revoked"} />, ago(t.createdAt),
                !t.active ? "" : t.id === me.tokenId ? <span class="muted small">this session</span>
                  : <Action label="Revoke" name={t.name ?? t.prefix} kind="danger" run={() => api("DELETE", `/token/${t.id}`)} confirm={`Revoke token ${t.name ?? t.prefix}? Its sessions end at once.`} done={tokens.reload} />,
              ])} />}
        <NewToken done={tokens.reload} />
      </Section>
      <Section title="Secrets">
        {!secrets.data ? <Loading error={secrets.error} what="secrets" />
          : <Table caption="Secrets" empty="No secret." head={["Name", "Created", "Changed", ""]}
              rows={secrets.data.map((s) => [
                <code>{s.name}</code>, ago(s.createdAt), ago(s.updatedAt),
                <Action label="Delete" name={s.name} kind="danger" run={() => api("DELETE", `/secret/${encodeURIComponent(s.name)}`)} confirm={`Delete secret ${s.name}?`} done={secrets.reload} />,
              ])} />}
        <p class="muted small">Values are never shown. Setting an existing name replaces its value for containers started from then on.</p>
        <NewSecret done={secrets.reload} />
      </Section>
    </>
  );
}
