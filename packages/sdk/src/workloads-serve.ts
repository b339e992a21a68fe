/**
 * `beta9 serve` and `workload.serve()`: an ephemeral copy of a workload with exactly one
 * container, its logs streamed, and hot reload: every save of a file in the bundle rebundles,
 * uploads, and swaps the session to the new code once its container answers (the old one stops
 * after). Heartbeats keep the session alive; `stop()` (or this process dying, which stops the
 * heartbeats) makes the container go away.
 *
 * Watching: the directories of the bundle's own input files, non-recursively (fs.watch on a
 * directory sees editors' write-to-temp-then-rename saves, which a watch on the file loses), and
 * after every rebuild the set follows the new imports.
 */
import { watch, type FSWatcher } from "node:fs";
import { dirname } from "node:path";
import type { LogLine, WorkloadDescriptor, StubConfigInput, ImageSpec } from "@beta9/protocol";
import type { Client, ServeSession } from "./client.js";
import { bundleCode, type CodeBundle } from "./workloads-bundle.js";
import { exportRef, prepareWorkloadStub, stubFor, uploadCode, type WorkloadSource } from "./workloads-deploy.js";

export type ServeEvent =
  | { kind: "ready"; url: string; ms: number }
  | { kind: "change"; file: string }
  /** `ms`: from the first file event of this reload to the new container answering. */
  | { kind: "reloaded"; ms: number; stubId: string; reloads: number }
  | { kind: "unchanged" }
  | { kind: "reload-failed"; error: Error }
  | { kind: "ended"; reason: string };

export interface ServeOptions {
  /** Container log lines (default: dropped). */
  onLog?: (line: LogLine) => void;
  onEvent?: (event: ServeEvent) => void;
  /** Image build log lines. */
  onBuildLog?: (line: string) => void;
  /** Heartbeat interval (default 3 s; the gateway ends a session after 15 s without one). */
  heartbeatMs?: number;
  /** Watch the project and reload on save (default true). */
  watch?: boolean;
  /** Wait after a file event for more (one save often writes several times); default 25 ms. */
  debounceMs?: number;
  /** Packs the code instead of esbuild (see PrepareOptions.bundle); called again on every reload. */
  bundle?: () => Promise<CodeBundle>;
}

export interface ServeHandle {
  /** Full URL to call: POST the input as JSON. */
  readonly url: string;
  readonly sessionId: string;
  /** Current session state (stub, container, reloads). */
  session(): ServeSession;
  /** Rebundles and swaps now (what a save does). */
  reload(): Promise<void>;
  /** Ends the session: its container stops. */
  stop(): Promise<void>;
  /** Settles when the session ends (stop(), or the gateway ended it). */
  readonly done: Promise<void>;
}

type ServableWorkload = WorkloadDescriptor & { config: StubConfigInput; image?: { toSpec(): ImageSpec } };

/** Starts serving; resolves once the first container answers. */
export async function serveWorkload(client: Client, workload: ServableWorkload, source: WorkloadSource, options: ServeOptions = {}): Promise<ServeHandle> {
  if (!["endpoint", "taskqueue", "function"].includes(workload.kind)) {
    throw new TypeError(`${workload.name} is a ${workload.kind}; serve runs endpoints, task queues and functions (deploy a schedule instead)`);
  }
  const started = Date.now();
  const prepared = await prepareWorkloadStub(client, workload, source, "serve", {
    ...(options.onBuildLog && { onLog: options.onBuildLog }), ...(options.bundle && { bundle: options.bundle }),
  });
  let session = await client.createServeSession(prepared.stub.id);
  // A web app's routes live under the session's URL with a slash.
  const url = `${client.gateway}${session.url}${workload.config.webApp === true ? "/" : ""}`;
  let ended = false;
  let endDone!: () => void;
  const done = new Promise<void>((r) => (endDone = r));
  const end = (reason: string) => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    for (const w of watchers.values()) w.close();
    watchers.clear();
    options.onEvent?.({ kind: "ended", reason });
    // Log streams end when their container exits; give them a moment, then cut them.
    // (Not unref'd: `done` must settle even when nothing else keeps the process alive.)
    setTimeout(() => void logs.destroy().finally(endDone), 500);
  };

  // Logs: one follow per container the session runs on, on a client of its own so that
  // stopping can cut the streams without waiting for them.
  const { Client: ClientClass } = await import("./client.js");
  const logs = new ClientClass({ gateway: client.gateway, ...(client.token && { token: client.token }) });
  const followed = new Set<string>();
  const follow = (s: ServeSession) => {
    if (!s.containerId || followed.has(s.containerId) || ended) return;
    followed.add(s.containerId);
    void (async () => {
      try {
        for await (const event of logs.followContainer(s.containerId!)) if (event.kind === "log") options.onLog?.(event.line);
      } catch {
        // the stream was cut (stop) or the gateway went away; the heartbeat reports the latter
      }
    })();
  };
  const update = (s: ServeSession) => {
    session = s;
    follow(s);
  };

  // The first container: wait until it answers /health (its log streams meanwhile).
  try {
    let seen: string | undefined;
    while (!session.ready) {
      await new Promise((r) => setTimeout(r, 20));
      update(await client.getServeSession(session.id));
      if (session.containerId) seen = session.containerId;
      else if (seen) {
        const c = await client.getContainer(seen).catch(() => undefined);
        const why = c ? `${c.reason ?? "exited"}${c.exitCode !== null ? ` (exit code ${c.exitCode})` : ""}${c.message ? `: ${c.message}` : ""}` : "exited";
        throw new Error(`the container of ${workload.name} ended before it answered: ${why}; its log is above (beta9 container logs ${seen})`);
      }
    }
  } catch (err) {
    await client.endServeSession(session.id).catch(() => undefined);
    await logs.destroy();
    throw err;
  }
  options.onEvent?.({ kind: "ready", url, ms: Date.now() - started });

  const heartbeat = setInterval(() => {
    client.heartbeatServeSession(session.id).then(update, (err: { status?: number; message?: string }) => {
      if (err.status === 404) end("the gateway ended the session (it restarted, or missed heartbeats)");
    });
  }, options.heartbeatMs ?? 3000);

  // Hot reload, one at a time; a save during a reload triggers one more after it.
  let inputs = new Set(prepared.inputs);
  let running: Promise<void> | undefined;
  let again = false;
  let firstEventAt = 0;
  const reload = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        const since = firstEventAt || Date.now();
        firstEventAt = 0;
        try {
          const code = options.bundle ? await options.bundle() : await bundleCode(source.file, exportRef(workload, source));
          inputs = new Set(code.inputs);
          watchDirs();
          if (code.sha256 === lastHash) {
            options.onEvent?.({ kind: "unchanged" });
            continue;
          }
          await uploadCode(client, code);
          const stub = await stubFor(client, workload, code, prepared.imageId, "serve");
          update(await client.replaceServeStub(session.id, stub.id));
          lastHash = code.sha256;
          options.onEvent?.({ kind: "reloaded", ms: Date.now() - since, stubId: stub.id, reloads: session.reloads });
        } catch (err) {
          options.onEvent?.({ kind: "reload-failed", error: err as Error });
        }
      } while (again && !ended);
    })().finally(() => (running = undefined));
    return running;
  };
  let lastHash = prepared.codeHash;

  const watchers = new Map<string, FSWatcher>();
  let timer: NodeJS.Timeout | undefined;
  const onEvent = (dir: string, name: string | null) => {
    if (ended || name === null) return;
    const file = `${dir}/${name}`;
    if (!inputs.has(file)) return;
    firstEventAt ||= Date.now();
    options.onEvent?.({ kind: "change", file });
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), options.debounceMs ?? 25);
  };
  const watchDirs = () => {
    if (options.watch === false || ended) return;
    const dirs = new Set([...inputs].map((f) => dirname(f)));
    for (const [dir, w] of watchers) if (!dirs.has(dir)) (w.close(), watchers.delete(dir));
    for (const dir of dirs) {
      if (watchers.has(dir)) continue;
      try {
        watchers.set(dir, watch(dir, (_type, name) => onEvent(dir, name)));
      } catch {
        // a directory that vanished: the next rebuild will fail and say why
      }
    }
  };
  watchDirs();

  return {
    url,
    sessionId: session.id,
    session: () => session,
    reload,
    done,
    async stop() {
      if (ended) return done;
      await client.endServeSession(session.id).catch(() => undefined);
      end("stopped");
      return done;
    },
  };
}
