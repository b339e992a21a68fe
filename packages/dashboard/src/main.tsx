/** The dashboard's shell: sign-in, navigation, and a hash router (no server routes: `/` serves it all). */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, clearToken, getToken, setToken, type Whoami } from "./api.js";
import { Me } from "./ui.js";
import { Overview } from "./pages/overview.js";
import { Deployments, DeploymentDetail } from "./pages/deployments.js";
import { Tasks, TaskDetail } from "./pages/tasks.js";
import { Logs } from "./pages/logs.js";
import { Sandboxes } from "./pages/sandboxes.js";
import { Images } from "./pages/images.js";
import { Access } from "./pages/access.js";
import { Machines } from "./pages/machines.js";

const PAGES = [
  ["#/", "Overview"], ["#/deployments", "Deployments"], ["#/tasks", "Tasks"], ["#/logs", "Logs"], ["#/sandboxes", "Sandboxes"],
  ["#/images", "Images"], ["#/access", "Tokens & secrets"], ["#/machines", "Machines & pools"],
] as const;

export interface Route {
  path: string[];
  params: URLSearchParams;
}

function parse(hash: string): Route {
  const [path = "", query = ""] = hash.replace(/^#\/?/, "").split("?");
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function useRoute(): Route {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return parse(hash);
}

function SignIn({ onSignedIn, error }: { onSignedIn: (me: Whoami) => void; error?: string | undefined }) {
  const [key, setKey] = useState("");
  const [msg, setMsg] = useState(error);
  const submit = async (e: Event) => {
    e.preventDefault();
    setToken(key.trim());
    try {
      onSignedIn(await api<Whoami>("GET", "/whoami"));
    } catch (err) {
      clearToken();
      setMsg((err as Error).message);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>beta9</h1>
      <form onSubmit={submit} class="card" aria-describedby="signin-help">
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" required value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
        <p id="signin-help" class="muted small">
          The token <code>beta9 up</code> printed (or one from <code>beta9 token create</code>). It is kept in this tab only and sent in a header, never in a URL.
        </p>
        <button type="submit" class="btn primary">Sign in</button>
        {msg && <p role="alert" class="error">{msg}</p>}
      </form>
    </main>
  );
}

function Page({ route }: { route: Route }) {
  const [top, id] = route.path;
  switch (top) {
    case undefined: return <Overview />;
    case "deployments": return id ? <DeploymentDetail id={id} /> : <Deployments />;
    case "tasks": return id ? <TaskDetail id={id} /> : <Tasks params={route.params} />;
    case "logs": return <Logs params={route.params} />;
    case "sandboxes": return <Sandboxes />;
    case "images": return <Images selected={id} />;
    case "access": return <Access />;
    case "machines": return <Machines />;
    default: return <p role="alert">No page {top}. <a href="#/">Overview</a></p>;
  }
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Whoami | null>(null);
  const [checking, setChecking] = useState(getToken() !== null);
  const [error, setError] = useState<string>();
  useEffect(() => {
    if (!getToken()) return;
    api<Whoami>("GET", "/whoami").then(setMe, (err: Error) => {
      clearToken();
      setError(err.message);
    }).finally(() => setChecking(false));
  }, []);
  if (checking) return <p class="muted" aria-busy="true">Signing in…</p>;
  if (!me) return <SignIn onSignedIn={setMe} error={error} />;
  const current = `#/${route.path[0] ?? ""}`;
  const signOut = () => {
    clearToken();
    setMe(null);
  };
  return (
    <Me.Provider value={me}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
      <header class="top">
        <span class="brand">beta9</span>
        <nav aria-label="Pages">
          <ul>{PAGES.map(([href, label]) => <li><a href={href} aria-current={current === href ? "page" : undefined}>{label}</a></li>)}</ul>
        </nav>
        <span class="who small">
          <span title={me.tokenId}>{me.workspaceName} · {me.tokenType}{me.canWrite ? "" : " (read-only)"}</span>
          <button type="button" class="btn link" onClick={signOut}>Sign out</button>
        </span>
      </header>
      <main id="main" tabIndex={-1}><Page route={route} /></main>
    </Me.Provider>
  );
}

render(<App />, document.getElementById("app")!);
