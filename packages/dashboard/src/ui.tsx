/** Shared pieces: data hooks, tables, buttons that act, charts, and the signed-in token's context. */
import { createContext, type ComponentChildren } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Whoami } from "./api.js";

export const Me = createContext<Whoami | null>(null);
export const useMe = (): Whoami => useContext(Me)!;

/** Loads `load()` now and again every `everyMs` (when set) while the page is shown; `reload` forces it. */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[], everyMs?: number) {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  useEffect(() => {
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const data = await load(ac.signal);
        if (!ac.signal.aborted) setState({ data });
      } catch (err) {
        if (!ac.signal.aborted) setState((s) => ({ ...s, error: (err as Error).message }));
      }
      if (everyMs && !ac.signal.aborted) timer = setTimeout(run, document.hidden ? everyMs * 4 : everyMs);
    };
    void run();
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { ...state, reload };
}

export const ago = (iso: string | number | null | undefined): string => {
  if (iso === null || iso === undefined) return "—";
  const s = Math.round((Date.now() - (typeof iso === "number" ? iso : Date.parse(iso))) / 1000);
  if (s < 60) return `${Math.max(0, s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
};
/** A time to come, as "in 4m" ("now" once it has passed). */
export const inFuture = (iso: string | null | undefined): string => {
  if (iso === null || iso === undefined) return "—";
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s <= 0) return "now";
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.floor(s / 60)}m`;
  if (s < 86400) return `in ${Math.floor(s / 3600)}h`;
  return `in ${Math.floor(s / 86400)}d`;
};
export const short = (id: string | null | undefined): string => (id ? id.slice(0, 8) : "—");
/** A name-like id (a worker's) in full when it is short; a generated one cut to its first 8 characters. */
export const shortName = (id: string): string => (id.length <= 24 && !/^[0-9a-f]{8}-/.test(id) ? id : short(id));
export const bytes = (n: number): string =>
  n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1073741824).toFixed(2)} GiB`;
export const mib = (n: number): string => (n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${n} MiB`);
export const cpu = (m: number): string => `${(m / 1000).toFixed(m % 1000 ? 2 : 0)} CPU`;

export function Badge({ value }: { value: string }) {
  return <span class={`badge b-${value.toLowerCase()}`}>{value}</span>;
}

export function Section({ title, actions, children }: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section aria-label={title} class="card">
      <header class="card-head"><h2>{title}</h2>{actions}</header>
      {children}
    </section>
  );
}

export function Loading({ error, what }: { error?: string | undefined; what: string }) {
  return error ? <p role="alert" class="error">Could not load {what}: {error}</p> : <p class="muted" aria-busy="true">Loading {what}…</p>;
}

/** A table; `empty` is said when there are no rows. Wide tables scroll inside their card on a phone. */
/** Text with `backticked` commands shown as code (empty states name the command that fills them). */
export function withCode(text: string): ComponentChildren {
  return text.split("`").map((part, i) => (i % 2 ? <code>{part}</code> : part));
}

export function Table({ caption, head, rows, empty }: { caption: string; head: string[]; rows: ComponentChildren[][]; empty: string }) {
  if (rows.length === 0) return <p class="muted empty">{withCode(empty)}</p>;
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={caption}>
      <table>
        <caption class="sr-only">{caption}</caption>
        <thead><tr>{head.map((h) => <th scope="col">{h}</th>)}</tr></thead>
        <tbody>{rows.map((r) => <tr>{r.map((c) => <td>{c}</td>)}</tr>)}</tbody>
      </table>
    </div>
  );
}

/**
 * A button that runs a mutation. Shown only to tokens that may write (a restricted token sees none);
 * `confirm` asks first. The outcome is announced in a live region.
 */
export function Action({ label, run, confirm, done, kind = "secondary", name }: {
  label: string; run: () => Promise<unknown>; confirm?: string; done?: () => void; kind?: "primary" | "secondary" | "danger"; name?: string;
}) {
  const me = useMe();
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<string | null>(null);
  if (!me.canWrite) return null;
  const click = async () => {
    if (confirm && !window.confirm(confirm)) return;
    setBusy(true);
    setMsg(null);
    try {
      await run();
      done?.();
    } catch (err) {
      setMsg(err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={`btn ${kind}`} data-mutates="true" disabled={busy} aria-label={name ? `${label} ${name}` : label} onClick={click}>{busy ? "…" : label}</button>
      {msg && <span role="alert" class="error small">{msg}</span>}
    </span>
  );
}

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  unit?: string;
}

/** A small SVG line chart over fixed steps; the latest and peak values are also given as text. */
export function Chart({ title, series, stepSeconds }: { title: string; series: ChartSeries[]; stepSeconds: number }) {
  const w = 320;
  const h = 90;
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const max = Math.max(1e-9, ...all);
  const n = Math.max(1, (series[0]?.values.length ?? 1) - 1);
  const path = (values: (number | null)[]) => {
    let d = "";
    let pen = false;
    values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${((i / n) * w).toFixed(1)},${(h - (v / max) * (h - 4) - 2).toFixed(1)}`;
      pen = true;
    });
    return d;
  };
  const fmt = (v: number | null | undefined, unit = "") => (v === null || v === undefined ? "—" : `${Number.isInteger(v) ? v : v.toFixed(3)}${unit}`);
  const summary = series.map((s) => {
    const last = [...s.values].reverse().find((v) => v !== null);
    const sum = s.values.reduce<number>((a, v) => a + (v ?? 0), 0);
    return `${s.label}: last ${fmt(last, s.unit)}, total ${fmt(sum, s.unit)}`;
  }).join("; ");
  return (
    <figure class="chart" data-chart={title}>
      <figcaption><strong>{title}</strong> <span class="muted small">peak {fmt(all.length ? Math.max(...all) : null, series[0]?.unit)} · {Math.round((n * stepSeconds) / 60)} min</span></figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${title}. ${summary}`} preserveAspectRatio="none">
        <line x1="0" y1={h - 1} x2={w} y2={h - 1} class="axis" />
        {series.map((s, i) => <path d={path(s.values)} class={`line l${i}`} />)}
        {/* A dot on each non-zero step: a lone spike in a 180-step window is otherwise a hairline. */}
        {series.map((s, i) => s.values.map((v, j) => (v ? <circle cx={(j / n) * w} cy={h - (v / max) * (h - 4) - 2} r="2.5" class={`dot l${i}`} /> : null)))}
      </svg>
      <p class="legend small">{series.map((s, i) => <span class={`key k${i}`}>{s.label}</span>)}</p>
      <p class="sr-only" data-summary>{summary}</p>
    </figure>
  );
}

/** JSON shown as text, cut at a size a page can hold. */
export function Json({ value, label }: { value: unknown; label: string }) {
  const text = value === undefined ? "—" : JSON.stringify(value, null, 2) ?? "null";
  return <pre class="json" aria-label={label} tabIndex={0}>{text.length > 20_000 ? `${text.slice(0, 20_000)}\n… (${text.length} characters)` : text}</pre>;
}

/** Keeps a scrolled-to-bottom element at the bottom as lines arrive (unless the reader scrolled up). */
export function useStickToBottom<T extends HTMLElement>(dep: unknown) {
  const ref = useRef<T>(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [dep]);
  const onScroll = () => {
    const el = ref.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  };
  return { ref, onScroll };
}
