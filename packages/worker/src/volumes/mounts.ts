/**
 * Volumes in containers on this worker. When a container starts, each of its volumes is the
 * volume's current snapshot (cache.ts) under an overlay with the container's own upper directory,
 * bound at its mount path: reads come from the shared snapshot, writes land in the upper directory.
 * When it ends, what the upper directory holds is committed to the gateway (changes.ts, commit.ts)
 * before the container is reported exited, so the next container to start, on any worker, sees it.
 *
 * Nothing is lost to a gateway that cannot be reached or a worker that dies: the container's
 * directories (`<state>/volumes/containers/<id>/`, with meta.json naming volume and version) stay
 * until their commit succeeds, retried every minute and at the next start of the worker.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { ContainerRequest } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";
import type { Mount } from "../runtime/types.js";
import { mountOverlay, mountPointsUnder, unmount } from "../runtime/runc/overlay.js";
import { VolumeCache, type Snapshot } from "./cache.js";
import { diffOverlay } from "./changes.js";
import { commitDiff } from "./commit.js";
import { VolumeHttpError } from "./gateway.js";

interface Attached {
  snapshot: Snapshot;
  /** upper/, work/, merged/ of this container's view of the volume. */
  dir: string;
  /** The snapshot is a stand-in (the real one was gone after a restart): not held in the cache. */
  standIn?: true;
}

interface Meta {
  workspaceId: string;
  volumes: { name: string; volumeId: string; version: number; dir: string }[];
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
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: { stateDir: string; gateway: GatewayEndpoint; logger: Logger }) {
    this.cache = new VolumeCache(join(o.stateDir, "volumes", "cache"), o.gateway);
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

  /** Mounts the request's volumes; the binds to add to its spec. Leaves nothing behind on failure. */
  async attach(request: ContainerRequest): Promise<Mount[]> {
    const root = join(this.containersDir, request.containerId);
    const list: Attached[] = [];
    const meta: Meta = { workspaceId: request.workspaceId, volumes: [] };
    const mounts: Mount[] = [];
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      for (const [i, volume] of (request.volumes ?? []).entries()) {
        const snapshot = await this.cache.acquire(request.workspaceId, volume.name);
        const dir = join(root, String(i));
        list.push({ snapshot, dir });
        meta.volumes.push({ name: volume.name, volumeId: snapshot.volumeId, version: snapshot.version, dir });
        // Written before the mount: a worker killed from here on finds the container's changes and commits them.
        await writeFile(join(root, "meta.json"), JSON.stringify(meta));
        await mountOverlay([snapshot.dir], { upper: join(dir, "upper"), work: join(dir, "work"), rootfs: join(dir, "merged") });
        mounts.push({ source: join(dir, "merged"), destination: volume.mountPath, readOnly: false });
      }
      this.attached.set(request.containerId, list);
      return mounts;
    } catch (err) {
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
    return this.track(this.settle(containerId, list, log));
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
        const { workspaceId, name, volumeId, version } = a.snapshot;
        try {
          if (!mountPointsUnder(merged).includes(merged)) {
            await mountOverlay([a.snapshot.dir], { upper: join(a.dir, "upper"), work: join(a.dir, "work"), rootfs: merged });
          }
          const diff = await diffOverlay(join(a.dir, "upper"), merged, a.snapshot.files);
          const committed = await commitDiff(this.o.gateway, { workspaceId, name, volumeId }, diff);
          const skipped = diff.skipped.length > 0 ? `; not kept (volumes hold regular files): ${diff.skipped.slice(0, 5).join(", ")}` : "";
          if (committed) log(`volume ${name}: committed ${diff.changed.length} changed and ${diff.removed.length} removed files as version ${committed.version} (from ${version})${skipped}`);
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
      for (const v of meta.volumes) {
        if (!existsSync(v.dir)) continue;
        const snapshot = await this.cache.local(meta.workspaceId, v.name, v.volumeId, v.version);
        // Without its snapshot no removal can be told apart from an untouched file: keep the changed files only.
        list.push(snapshot ? { dir: v.dir, snapshot } : { dir: v.dir, snapshot: await this.emptySnapshot(meta.workspaceId, v), standIn: true });
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
