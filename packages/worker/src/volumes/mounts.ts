/**
 * Volumes in containers on this worker. When a container starts, each of its volumes is the
 * volume's current snapshot (cache.ts) under an overlay with the container's own upper directory,
 * bound at its mount path: reads come from the shared snapshot, writes land in the upper directory.
 * When it ends, what the upper directory holds is committed to the gateway (changes.ts, commit.ts)
 * before the container is reported exited, so the next container to start, on any worker, sees it.
 *
 * While it runs, the container can also commit (publish its changes now) and reload (take in what
 * others committed) through its control socket (control.ts, sync.ts): `volume.commit()` and
 * `volume.reload()` in the SDKs. Each volume's commits and reloads run one at a time.
 *
 * Nothing is lost to a gateway that cannot be reached or a worker that dies: the container's
 * directories (`<state>/volumes/containers/<id>/`, with meta.json naming volume and version) stay
 * until their commit succeeds, retried every minute and at the next start of the worker.
 */
import { existsSync } from "node:fs";
import { chown, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { basename, dirname, join } from "node:path";
import type { Logger } from "pino";
import { Beta9Error, type ContainerRequest } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";
import type { Mount } from "../runtime/types.js";
import { mountOverlay, mountPointsUnder, unmount } from "../runtime/runc/overlay.js";
import { VolumeCache, type Snapshot } from "./cache.js";
import { commitDiff } from "./commit.js";
import { closeControl, CONTROL_DIR, CONTROL_SOCKET, controlHostDir, listenControl, snapshotsDir, type ControlHandler } from "./control.js";
import { VolumeHttpError } from "./gateway.js";
import { applyCommitted, loadBase, localChanges, newSyncState, planReload, saveBase, type SyncState } from "./sync.js";

interface Attached {
  snapshot: Snapshot;
  /** upper/, work/, merged/ of this container's view of the volume. */
  dir: string;
  /** The snapshot is a stand-in (the real one was gone after a restart): not held in the cache. */
  standIn?: true;
  /** Which of the container's volumes (its snapshots are bound at snapshotsDir(index)). */
  index: number;
  state: SyncState;
  /** The tail of this volume's commits and reloads, which run one at a time. */
  lock: Promise<unknown>;
  /** Newer snapshots reloads copied from, held while the container may still read them. */
  reloads: Snapshot[];
  /**
   * The gateway the volume was mounted from: its commits go there, even after the worker moved to
   * another gateway (a volume lives in one gateway's data dir; another would not know it, and its
   * changes would be refused and lost). Unreachable, they wait for it like any failed commit.
   */
  gatewayUrl: string;
}

/** Reload snapshots one container holds at most (the oldest is let go): a long-lived container that reloads often holds no more. */
const RELOADS_HELD = 2;

interface Meta {
  workspaceId: string;
  volumes: { name: string; volumeId: string; version: number; dir: string; gatewayUrl?: string }[];
}

const RETRY_MS = 60_000;

export class VolumeMounts {
  readonly cache: VolumeCache;
  private readonly containersDir: string;
  private readonly attached = new Map<string, Attached[]>();
  /** Volumes of ended containers whose commit failed, snapshots still held, for the retry. */
  private readonly held = new Map<string, Attached[]>();
  /** Containers whose commit is running now (a retry must not start a second one). */
  private readonly busy = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Each running container's control socket (control.ts). */
  private readonly controls = new Map<string, { server: Server; dir: string }>();
  private retryTimer: NodeJS.Timeout | undefined;

  /** `owner`: the host uid that is root in containers (user namespaces), who must own what they write to. */
  constructor(private readonly o: { stateDir: string; gateway: GatewayEndpoint; logger: Logger; owner?: () => number | undefined }) {
    this.cache = new VolumeCache(join(o.stateDir, "volumes", "cache"), o.gateway, () => o.owner?.());
    this.containersDir = join(o.stateDir, "volumes", "containers");
  }

  /** Cleans the cache, then commits (in the background) what containers of a previous run left. */
  async start(): Promise<void> {
    await this.cache.init();
    await mkdir(this.containersDir, { recursive: true });
    this.track(this.retryLeftovers());
    this.retryTimer = setInterval(() => this.track(this.retryLeftovers()), RETRY_MS);
    this.retryTimer.unref();
  }

  /**
   * Mounts the request's volumes; the binds and environment to add to its spec (the volumes, their
   * snapshots for reloads, and the control socket). Leaves nothing behind on failure.
   */
  async attach(request: ContainerRequest): Promise<{ mounts: Mount[]; env: Record<string, string> }> {
    const root = join(this.containersDir, request.containerId);
    const list: Attached[] = [];
    const meta: Meta = { workspaceId: request.workspaceId, volumes: [] };
    const mounts: Mount[] = [];
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      for (const [i, volume] of (request.volumes ?? []).entries()) {
        const gatewayUrl = this.o.gateway.url;
        const snapshot = await this.cache.acquire(request.workspaceId, volume.name);
        const dir = join(root, String(i));
        list.push({ snapshot, dir, index: i, state: newSyncState(snapshot.files, snapshot.version), lock: Promise.resolve(), reloads: [], gatewayUrl });
        meta.volumes.push({ name: volume.name, volumeId: snapshot.volumeId, version: snapshot.version, dir, gatewayUrl });
        // Written before the mount: a worker killed from here on finds the container's changes and commits them.
        await writeFile(join(root, "meta.json"), JSON.stringify(meta));
        await mountOverlay([snapshot.dir], { upper: join(dir, "upper"), work: join(dir, "work"), rootfs: join(dir, "merged") });
        const owner = this.o.owner?.();
        if (owner !== undefined) await chown(join(dir, "merged"), owner, owner); // the volume's root is the container root's to write in
        mounts.push({ source: join(dir, "merged"), destination: volume.mountPath, readOnly: false });
        mounts.push({ source: dirname(snapshot.dir), destination: snapshotsDir(i), readOnly: true });
      }
      const controlDir = controlHostDir(this.o.stateDir, request.containerId);
      const server = await listenControl(controlDir, this.controlFor(request.containerId));
      this.controls.set(request.containerId, { server, dir: controlDir });
      mounts.push({ source: controlDir, destination: CONTROL_DIR, readOnly: true });
      this.attached.set(request.containerId, list);
      return { mounts, env: { BETA9_VOLUME_CONTROL: CONTROL_SOCKET } };
    } catch (err) {
      await this.closeControl(request.containerId);
      for (const a of list) {
        await unmount(join(a.dir, "merged")).catch(() => {});
        await this.cache.release(a.snapshot);
      }
      await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * After the container ended: commits each volume's changes, unmounts and cleans up. Never
   * throws; `log` gets one line per volume (what was committed, or why not).
   */
  detach(containerId: string, log: (line: string) => void): Promise<void> {
    const list = this.attached.get(containerId);
    if (!list) return Promise.resolve();
    this.attached.delete(containerId);
    // No request from the container after this; one that is running finishes first (the volume's lock).
    return this.track(this.closeControl(containerId).then(() => this.settle(containerId, list, log)));
  }

  private async closeControl(containerId: string): Promise<void> {
    const control = this.controls.get(containerId);
    this.controls.delete(containerId);
    await closeControl(control?.server, control?.dir ?? controlHostDir(this.o.stateDir, containerId)).catch(() => {});
  }

  /** What the container's control socket may do: only to the volumes this container mounts. */
  private controlFor(containerId: string): ControlHandler {
    const find = (name: string): Attached => {
      const list = this.attached.get(containerId) ?? [];
      const a = list.find((v) => v.snapshot.name === name);
      if (!a) throw new Beta9Error("VOLUME_NOT_MOUNTED", { name: JSON.stringify(name.slice(0, 100)), mounted: list.map((v) => v.snapshot.name).join(", ") || "none" });
      return a;
    };
    return {
      commit: (name) => serial(find(name), async (a) => {
        const { version, changed, removed, busy, skipped } = await this.commitNow(a);
        return { name, version, changed, removed, busy, skipped };
      }),
      reload: (name) => serial(find(name), async (a) => {
        const { workspaceId, volumeId } = a.snapshot;
        const snap = await this.cache.acquire(workspaceId, name);
        if (snap.volumeId !== volumeId) {
          await this.cache.release(snap);
          throw new Beta9Error("CONFLICT", { reason: `volume ${name} was deleted (and maybe created again) since this container mounted it; start a new container to see it` });
        }
        a.reloads.push(snap);
        if (a.reloads.length > RELOADS_HELD) await this.cache.release(a.reloads.shift()!);
        const local = await localChanges(join(a.dir, "upper"), join(a.dir, "merged"), a.state);
        const plan = planReload(a.state, snap.version, snap.files, local);
        return { name, source: `${snapshotsDir(a.index)}/${basename(snap.dir)}`, ...plan };
      }),
      reloaded: (name, version) => serial(find(name), async (a) => {
        if (a.state.pending?.version !== version) throw new Beta9Error("CONFLICT", { reason: `no reload of volume ${name} to version ${version} is waiting to be confirmed` });
        a.state.base = a.state.pending.base;
        a.state.version = version;
        delete a.state.pending;
        await saveBase(a.dir, a.state);
        return { name, version };
      }),
    };
  }

  /** Commits what the container changed in one volume since its base, and moves the base forward. */
  private async commitNow(a: Attached): Promise<{ version: number; changed: number; removed: number; busy: string[]; skipped: string[] }> {
    const { workspaceId, name, volumeId } = a.snapshot;
    const diff = await localChanges(join(a.dir, "upper"), join(a.dir, "merged"), a.state);
    // A stand-in snapshot cannot tell a removal from a file never seen: keep the changed files only.
    if (a.standIn) diff.removed = [];
    const outcome = await commitDiff({ ...this.o.gateway, url: a.gatewayUrl }, { workspaceId, name, volumeId }, diff);
    applyCommitted(a.state, outcome.changes, outcome.stamps);
    if (outcome.changes.length > 0) await saveBase(a.dir, a.state);
    const removed = outcome.changes.filter((c) => "delete" in c).length;
    if (outcome.volume) a.state.version = outcome.volume.version;
    const version = a.state.version;
    return { version, changed: outcome.changes.length - removed, removed, busy: outcome.busy, skipped: diff.skipped };
  }

  /** Resolves once no commit is running (the worker waits for it before it closes). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  async close(): Promise<void> {
    clearInterval(this.retryTimer);
    await this.idle();
  }

  private track(job: Promise<void>): Promise<void> {
    this.inFlight.add(job);
    void job.finally(() => this.inFlight.delete(job));
    return job;
  }

  /** Commits every volume of the container; the ones that fail for a reason that may pass stay for a retry. */
  private async settle(containerId: string, list: Attached[], log: (line: string) => void): Promise<void> {
    this.busy.add(containerId);
    const failed: Attached[] = [];
    try {
      for (const a of list) {
        const merged = join(a.dir, "merged");
        const { name, version } = a.snapshot;
        try {
          await a.lock.catch(() => {}); // a commit or reload the container asked for finishes first
          if (!mountPointsUnder(merged).includes(merged)) {
            await mountOverlay([a.snapshot.dir], { upper: join(a.dir, "upper"), work: join(a.dir, "work"), rootfs: merged });
          }
          const done = await this.commitNow(a);
          const skipped = done.skipped.length > 0 ? `; not kept (volumes hold files, directories and symlinks): ${done.skipped.slice(0, 5).join(", ")}` : "";
          if (done.changed + done.removed > 0) log(`volume ${name}: committed ${done.changed} changed and ${done.removed} removed files as version ${done.version} (from ${version})${skipped}`);
          else if (skipped) log(`volume ${name}: nothing committed${skipped}`);
          await this.drop(a);
        } catch (err) {
          await unmount(merged).catch(() => {});
          if (err instanceof VolumeHttpError && !err.transient) {
            log(`volume ${name}: changes NOT committed: ${err.message}`);
            await this.drop(a);
            continue;
          }
          failed.push(a);
          log(`volume ${name}: commit failed (${(err as Error).message}); this worker retries every minute and at its next start`);
          this.o.logger.warn({ containerId, volume: name, err: (err as Error).message }, "volume commit failed; kept for a retry");
        }
      }
      if (failed.length === 0) await rm(join(this.containersDir, containerId), { recursive: true, force: true });
      else this.held.set(containerId, failed);
    } finally {
      this.busy.delete(containerId);
    }
  }

  private async drop(a: Attached): Promise<void> {
    await unmount(join(a.dir, "merged"));
    await rm(a.dir, { recursive: true, force: true });
    if (!a.standIn) await this.cache.release(a.snapshot);
    for (const snap of a.reloads.splice(0)) await this.cache.release(snap);
  }

  /** Commits what containers that are gone left behind (a failed commit, a crash of this worker). */
  private async retryLeftovers(): Promise<void> {
    for (const containerId of await readdir(this.containersDir).catch(() => [] as string[])) {
      if (this.attached.has(containerId) || this.busy.has(containerId)) continue;
      const root = join(this.containersDir, containerId);
      const held = this.held.get(containerId);
      if (held) {
        this.held.delete(containerId);
        await this.settle(containerId, held, (line) => this.o.logger.info({ containerId }, line));
        continue;
      }
      const meta = await readFile(join(root, "meta.json"), "utf8").then((t) => JSON.parse(t) as Meta, () => undefined);
      if (!meta) {
        for (const point of mountPointsUnder(root)) await unmount(point);
        await rm(root, { recursive: true, force: true });
        continue;
      }
      const list: Attached[] = [];
      for (const [index, v] of meta.volumes.entries()) {
        if (!existsSync(v.dir)) continue;
        const snapshot = await this.cache.local(meta.workspaceId, v.name, v.volumeId, v.version);
        // Without its snapshot no removal can be told apart from an untouched file: keep the changed files only.
        const found = snapshot ? { snapshot } : { snapshot: await this.emptySnapshot(meta.workspaceId, v), standIn: true as const };
        // Commits it made while it ran moved its base: those are not sent again.
        const state = newSyncState(found.snapshot.files, found.snapshot.version);
        state.base = (await loadBase(v.dir)) ?? state.base;
        list.push({ ...found, dir: v.dir, index, state, lock: Promise.resolve(), reloads: [], gatewayUrl: v.gatewayUrl ?? this.o.gateway.url });
      }
      await this.settle(containerId, list, (line) => this.o.logger.info({ containerId }, line));
    }
  }

  private async emptySnapshot(workspaceId: string, v: Meta["volumes"][number]): Promise<Snapshot> {
    const dir = join(this.o.stateDir, "volumes", "empty");
    await mkdir(dir, { recursive: true });
    return { workspaceId, name: v.name, volumeId: v.volumeId, version: v.version, dir, files: {} };
  }
}

/** Runs `fn` after the volume's earlier commits and reloads (they are never interleaved). */
function serial<T>(a: Attached, fn: (a: Attached) => Promise<T>): Promise<T> {
  const run = a.lock.then(() => fn(a), () => fn(a));
  a.lock = run.catch(() => {});
  return run;
}
