/**
 * Image builds: the gateway asks one worker to build an image (base + steps in build
 * containers), the worker streams the build log and uploads the packed result, and every caller
 * that asked for the same image id waits on that one build. Packed images live in
 * `<dataDir>/images/<id>.sqfs`, verified by sha256 on upload; workers fetch them on first use.
 */
import { checkQuota, DEFAULT_QUOTAS, type WorkspaceQuotas } from "../quotas.js";
import { TypedEmitter } from "../events.js";
import { createReadStream, type ReadStream } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { clearTempFiles } from "../objects/temp-files.js";
import { BuildHandoff } from "./build-handoff.js";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { Beta9Error, credentialSecretNames, formatErrorMessage, normalizeImageSpec, type GatewayMessage, type Image, type LogLine } from "@beta9/protocol";
import { writeVerified } from "../objects/object-store.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { ImageRepo } from "../store/types.js";

export type BuildEvent = { kind: "logs"; lines: LogLine[] } | { kind: "end"; image: Image };

interface BuildJob {
  imageId: string;
  /** The workspace whose request started it (its build quota). */
  workspaceId: string;
  /** Ended (kept a while for its logs): no longer counts against the build quota. */
  done?: boolean;
  spec: unknown;
  workerId: string | null;
  logs: LogLine[];
  startedAt: number;
  timer?: NodeJS.Timeout;
  /** Offered to the other gateways (build-handoff.ts): one of them builds it. */
  offered?: boolean;
}

const ORPHANED_BUILDS_CHECK_MS = 30_000;
const FOLLOW_POLL_MS = 1000;

export interface ImageBuildsOptions {
  dir: string;
  /** Other gateways use `dir` too (`--objects` on a shared mount): see objects/temp-files.ts. */
  shared?: boolean;
  images: ImageRepo;
  scheduler: Scheduler;
  logger?: Logger;
  /** How long to wait for a worker to build on (default 60 s). */
  workerWaitMs?: number;
  /** A build running longer than this fails (default 1 h). */
  buildTimeoutMs?: number;
  maxImageBytes?: number;
  /** Per-workspace limits (default DEFAULT_QUOTAS): builds running at once. */
  quotas?: WorkspaceQuotas;
  /** The workspace's values of these secrets (missing ones left out): pull credentials for builds. */
  secretValues?: (workspaceId: string, names: readonly string[]) => Record<string, string>;
}

type BuildCredentials = Extract<GatewayMessage, { type: "image.build" }>["credentials"];

const MAX_BUILD_LOG_LINES = 10_000;

export class ImageBuilds {
  private readonly jobs = new Map<string, BuildJob>();
  /** Each workspace's last image request: the next one waits for it (request()). */
  private readonly turns = new Map<string, Promise<void>>();
  /** A build's events under its image id. */
  private readonly events = new TypedEmitter<Record<string, BuildEvent>>();
  private readonly tmpDir: string;
  private orphanTimer: NodeJS.Timeout | undefined;
  private readonly handoff: BuildHandoff;

  constructor(private readonly o: ImageBuildsOptions) {
    this.tmpDir = join(o.dir, "tmp");
    this.handoff = new BuildHandoff({
      images: o.images, ...(o.logger && { logger: o.logger }), workerWaitMs: o.workerWaitMs ?? 60_000,
      canBuild: () => this.builders().length > 0,
      adopt: ({ id, spec, workspaceId }) => {
        const running = this.jobs.get(id);
        if (running && !running.done) return; // already building here
        this.start(workspaceId, id, spec);
        this.append(id, [{ stream: "stdout", line: "taken over from another gateway, which has no worker to build on", at: Date.now() }]);
      },
      ownOffers: () => [...this.jobs.values()].filter((j) => j.offered === true && !j.done).map((j) => j.imageId),
      reclaimed: (id) => {
        const job = this.jobs.get(id);
        if (!job) return;
        job.offered = false;
        this.dispatch(job);
      },
    });
    o.scheduler.events.on("worker_lost", (workerId: string) => {
      for (const job of this.jobs.values()) {
        if (job.workerId === workerId) void this.fail(job.imageId, `worker ${workerId} was lost during the build`);
      }
    });
  }

  async init(): Promise<void> {
    await clearTempFiles(this.tmpDir, this.o.shared === true);
    await this.o.images.failInterrupted();
    // A shared store: builds of a gateway that dies later never report either (0 on SQLite).
    this.orphanTimer = setInterval(() => {
      this.o.images.failOrphaned().catch((err: unknown) => this.o.logger?.warn({ err }, "could not check for other gateways' interrupted builds"));
    }, ORPHANED_BUILDS_CHECK_MS);
    this.orphanTimer.unref();
    // Packed files whose image is gone (deleted by its last workspace just before a crash). Not in
    // a directory other gateways share: a file there may be a build another gateway just uploaded.
    if (!this.o.shared) for (const name of await readdir(this.o.dir)) {
      const id = /^([a-f0-9]+)\.sqfs$/.exec(name)?.[1];
      if (id && !(await this.o.images.getAny(id))) await rm(join(this.o.dir, name), { force: true });
    }
  }

  close(): void {
    clearInterval(this.orphanTimer);
    this.handoff.close();
  }

  blobPath(id: string): string {
    return join(this.o.dir, `${id}.sqfs`);
  }

  openBlob(id: string): ReadStream {
    return createReadStream(this.blobPath(id));
  }

  /**
   * The workspace stops using the image; its packed file goes once no workspace uses it. Refused
   * (409) while it builds: the build would upload to a row that is gone.
   */
  async delete(workspaceId: string, id: string): Promise<void> {
    const result = await this.o.images.unlink(workspaceId, id);
    if (result === "absent") throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "image", id });
    if (result === "building") throw new Beta9Error("CONFLICT", { reason: `image ${id} is building; wait for it to end (beta9 image list), then delete it` });
    // Unless a request since has made the row again (its build writes the file anew); a crash
    // before this line leaves a file without a row, which init() removes.
    if (result === "orphaned" && !(await this.o.images.getAny(id))) await rm(this.blobPath(id), { force: true });
  }

  /**
   * Records the request and starts a build unless one runs or the image is ready. Quotas: past
   * `builds` only a request that starts no build passes; at `imageBytes` only images the workspace
   * already uses (builds in flight may overshoot it by what they make: at most `builds` images).
   */
  request(workspaceId: string, id: string, spec: unknown): Promise<Image> {
    // One at a time per workspace: the checks below read, then start a build; requests racing
    // through the awaits would all pass them.
    const turn = (this.turns.get(workspaceId) ?? Promise.resolve()).then(() => this.requestNow(workspaceId, id, spec));
    const settled = turn.then(() => {}, () => {});
    this.turns.set(workspaceId, settled);
    void settled.then(() => {
      if (this.turns.get(workspaceId) === settled) this.turns.delete(workspaceId);
    });
    return turn;
  }

  private async requestNow(workspaceId: string, id: string, spec: unknown): Promise<Image> {
    const quotas = this.o.quotas ?? DEFAULT_QUOTAS;
    const running = [...this.jobs.values()].filter((j) => j.workspaceId === workspaceId && !j.done).length;
    if (running >= quotas.builds) {
      const known = await this.o.images.getAny(id);
      if (!known || known.status === "failed") checkQuota(quotas, "builds", running);
    }
    const mine = await this.o.images.get(workspaceId, id);
    if (!mine || mine.status === "failed") checkQuota(quotas, "imageBytes", await this.o.images.bytes(workspaceId));
    const { image, build } = await this.o.images.request(workspaceId, id, spec);
    if (build) this.start(workspaceId, id, spec);
    return image;
  }

  /** The worker an image is being built on, if a build runs. */
  builderOf(id: string): string | null {
    return this.jobs.get(id)?.workerId ?? null;
  }

  logHistory(id: string): readonly LogLine[] {
    return this.jobs.get(id)?.logs ?? [];
  }

  subscribe(id: string, listener: (event: BuildEvent) => void): () => void {
    this.events.on(id, listener);
    // A build this gateway does not run (another gateway on a shared store took it, or was asked
    // for it): its end is read from the store, once a second.
    let timer: NodeJS.Timeout | undefined;
    if (!this.jobs.has(id)) {
      timer = setInterval(() => {
        void this.o.images.getAny(id).then((image) => {
          if (!image || image.status === "building" || timer === undefined) return;
          clearInterval(timer);
          timer = undefined;
          listener({ kind: "end", image });
        }, () => undefined);
      }, FOLLOW_POLL_MS);
      timer.unref();
    }
    return () => {
      clearInterval(timer);
      timer = undefined;
      this.events.off(id, listener);
    };
  }

  private start(workspaceId: string, imageId: string, spec: unknown): void {
    const job: BuildJob = { imageId, workspaceId, spec, workerId: null, logs: [], startedAt: Date.now() };
    this.jobs.set(imageId, job);
    job.timer = setTimeout(() => void this.fail(imageId, `the build did not finish within ${Math.round((this.o.buildTimeoutMs ?? 3_600_000) / 1000)} s`),
      this.o.buildTimeoutMs ?? 3_600_000);
    job.timer.unref();
    this.dispatch(job);
  }

  /**
   * Sends the build to a connected cluster worker, waiting a while for one to appear, isolating
   * ones first. Never to a machine: images are shared by every workspace, and a machine belongs to
   * one (its owner could upload any bytes as the image).
   */
  /** Connected cluster workers (never machines: images are shared by every workspace). */
  private cluster() {
    return this.o.scheduler.listWorkers().filter((w) => w.connected && !w.cordoned && w.workspaceId === undefined);
  }

  /** The cluster workers that may build, isolating ones first: a build runs the image author's commands, never as host processes unless the operator said so. */
  private builders() {
    return this.cluster().filter((w) => w.isolates || w.allowUnisolated === true).sort((a, b) => Number(b.isolates) - Number(a.isolates));
  }

  private dispatch(job: BuildJob): void {
    const cluster = this.cluster();
    const worker = this.builders()[0];
    if (worker) {
      let credentials: BuildCredentials;
      try {
        credentials = this.credentials(job);
      } catch (err) {
        void this.fail(job.imageId, (err as Error).message);
        return;
      }
      job.workerId = worker.id;
      this.append(job.imageId, [{ stream: "stdout", line: `building image ${job.imageId} on worker ${worker.id}`, at: Date.now() }]);
      worker.send({ type: "image.build", imageId: job.imageId, spec: job.spec, ...(credentials && { credentials }) });
      return;
    }
    if (cluster.length > 0) {
      void this.fail(job.imageId, `the connected workers (${cluster.map((w) => w.id).join(", ")}) run the process runtime, which isolates nothing, so they build no images: ` +
        "install runc and run a worker as root (apt-get install runc), or, if every image author is trusted, restart one with --allow-unisolated");
      return;
    }
    // No worker here: on a shared store another gateway may have one (offered once, then followed).
    if (job.offered === undefined) {
      job.offered = false;
      void this.handoff.offer(job.imageId, {
        ended: (image) => (image ? this.finish(image) : this.forgetJob(job)),
        unclaimed: () => this.failLater(job.imageId, "no gateway has a cluster worker to build on (machines do not build images, which every workspace shares); start one (beta9 up, or beta9 worker)"),
      }).then((offered) => {
        job.offered = offered;
        if (offered) this.append(job.imageId, [{ stream: "stdout", line: "no worker is connected to this gateway: the build is offered to the other gateways", at: Date.now() }]);
        else this.dispatch(job);
      }, (err: unknown) => this.failLater(job.imageId, `could not offer the build to the other gateways: ${(err as Error).message}`));
      return;
    }
    if (job.offered) return;
    if (Date.now() - job.startedAt > (this.o.workerWaitMs ?? 60_000)) {
      void this.fail(job.imageId, "no cluster worker is connected to build on (machines do not build images, which every workspace shares); start one (beta9 up, or beta9 worker)");
      return;
    }
    setTimeout(() => this.jobs.get(job.imageId) === job && this.dispatch(job), 500).unref();
  }

  /**
   * Pull credentials for the worker that builds: the current values of the secrets the spec names,
   * read at dispatch and handed to that worker only (never kept in the job, the store or a log).
   * One secret holds "user:password", or a token (no colon).
   */
  private credentials(job: BuildJob): BuildCredentials {
    const spec = normalizeImageSpec(job.spec);
    const names = credentialSecretNames(spec);
    if (names.length === 0) return undefined;
    const values = this.o.secretValues?.(job.workspaceId, names) ?? {};
    const missing = names.find((n) => values[n] === undefined);
    if (missing !== undefined) throw new Error(`SECRET_NOT_FOUND: ${formatErrorMessage("SECRET_NOT_FOUND", { name: missing })}`);
    if (names.length === 2) return { username: values[names[0]!]!, password: values[names[1]!]! };
    const value = values[names[0]!]!;
    const colon = value.indexOf(":");
    return colon < 0 ? { token: value } : { username: value.slice(0, colon), password: value.slice(colon + 1) };
  }

  /** Lines from the building worker. */
  append(imageId: string, lines: LogLine[]): void {
    const job = this.jobs.get(imageId);
    if (!job) return;
    job.logs.push(...lines);
    if (job.logs.length > MAX_BUILD_LOG_LINES) job.logs.splice(0, job.logs.length - MAX_BUILD_LOG_LINES);
    this.events.emit(imageId, { kind: "logs", lines } satisfies BuildEvent);
  }

  /** The worker uploads the packed image; it becomes ready once its bytes match `sha256`. */
  async upload(imageId: string, sha256: string, body: Readable): Promise<Image> {
    const { size } = await writeVerified(body, {
      tmpDir: this.tmpDir, target: this.blobPath(imageId), sha256, maxBytes: this.o.maxImageBytes ?? 64 * 1024 ** 3,
    });
    await this.o.images.markReady(imageId, size, sha256);
    return (await this.o.images.getAny(imageId))!;
  }

  /** The worker's verdict; a success must follow an upload. */
  async result(imageId: string, ok: boolean, error?: string): Promise<void> {
    const image = await this.o.images.getAny(imageId);
    if (ok && image?.status === "ready") return this.finish(image);
    await this.fail(imageId, ok ? "the worker reported success without uploading the image" : (error ?? "the build failed"));
  }

  /** fail() from a callback nobody awaits: a store that is gone (closing) is logged, never an unhandled rejection. */
  private failLater(imageId: string, error: string): void {
    this.fail(imageId, error).catch((err: unknown) => this.o.logger?.warn({ err, imageId }, "could not record a failed build"));
  }

  private async fail(imageId: string, error: string): Promise<void> {
    this.o.logger?.warn({ imageId, error }, "image build failed");
    await this.o.images.markFailed(imageId, error);
    const image = await this.o.images.getAny(imageId);
    if (image) this.finish(image);
  }

  /** A job whose image's row is gone (deleted meanwhile): nothing to report, its quota and timer freed. */
  private forgetJob(job: BuildJob): void {
    clearTimeout(job.timer);
    job.done = true;
    this.jobs.delete(job.imageId);
  }

  private finish(image: Image): void {
    const job = this.jobs.get(image.id);
    if (job?.timer) clearTimeout(job.timer);
    if (job) job.done = true;
    this.events.emit(image.id, { kind: "end", image } satisfies BuildEvent);
    // Keep the log a while for late readers, then forget the job.
    setTimeout(() => this.jobs.get(image.id) === job && this.jobs.delete(image.id), 10 * 60_000).unref();
  }
}
