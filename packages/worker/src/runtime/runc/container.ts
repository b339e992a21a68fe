/**
 * One runc container from start to release: prepare (netns, overlay, config.json) → launch
 * (`runc run --keep`) → exit (OOM check) → release (runc delete, umount, netns/veth, cgroups,
 * state dir). Every path out — normal exit, stop(), failed start — goes through release().
 */
import { chown, mkdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, tryRun } from "../../exec.js";
import type { ContainerExit, ContainerHandle, ContainerSpec, HostPort, LogSink } from "../types.js";
import { buildConfig, cpuQuotaUs, CPU_PERIOD_US, startingMillicores, validateSpecForBundle } from "./bundle.js";
import { readOomKills, removeCgroupTree, writeCpuQuota, type CgroupHierarchy } from "./cgroups.js";
import { launchRunc, runcFailureMessage, type RuncStatus } from "./launch.js";
import type { RuntimeNames } from "./names.js";
import { NETNS_DIR, type BridgeNetwork, type ContainerNetwork } from "./network.js";
import { lowerdirOption, mountOverlay, mountPointsUnder, overlayDirs, unmount } from "./overlay.js";
import { adoptImage, releaseSpare, type WritableLayerDisks } from "./disks.js";
import { mountContainer, prepareNetns, type UserNamespace } from "./mount-helper.js";
import { mappedBinds } from "./binds.js";

/** What a container needs from its runtime. */
export interface RuncContext {
  names: RuntimeNames;
  runcPath: string;
  network: BridgeNetwork;
  hierarchies: CgroupHierarchy[];
  cgroupParent: string;
  limitSwap: boolean;
  /** The user namespace containers run in (see mount-helper.ts); undefined with --userns=false. */
  userns: UserNamespace | undefined;
  /** The compiled mount helper; set whenever userns or disks is. */
  helper: string | undefined;
  /** Bounded writable layers; undefined when the bound is off. */
  disks: WritableLayerDisks | undefined;
}

const DEFAULT_GRACE_MS = 10_000;
/** The longest a start-up burst lasts when the container never says it is ready. */
export const STARTUP_BURST_MAX_MS = 10_000;

export class RuncContainer implements ContainerHandle {
  pid: number | undefined;
  ports: Record<number, HostPort> = {};
  readonly exited: Promise<ContainerExit>;
  private settleExited!: (exit: ContainerExit) => void;
  private readonly dir: string;
  private readonly cgroupPath: string;
  private network: ContainerNetwork | undefined;
  private mounted = false;
  /** Whether this instance created the state dir; if not, nothing here is ours to release. */
  private ownsDir = false;
  private launched = false;
  private started = false;
  private stopGraceMs: number | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly earlyStderr: string[] = [];
  /** The spec with its bind sources replaced by their idmapped clones (user namespace only). */
  private mappedSpec: ContainerSpec | undefined;
  private mappedEtc: { hosts: string; hostname: string } | undefined;
  /** Set while the container runs on its start-up burst (see ContainerSpec.startupBurstMillicores). */
  private burstTimer: NodeJS.Timeout | undefined;
  /** Settles at the runner's `runner ready:` line or when the container ends (whichever is first). */
  private readonly ready: Promise<void>;
  private settleReady!: () => void;

  constructor(
    private readonly ctx: RuncContext,
    private readonly spec: ContainerSpec,
    private readonly onLog: LogSink,
    /** Called once everything is released, just before `exited` resolves. */
    private readonly onReleased: () => void,
  ) {
    this.dir = ctx.names.containerDir(spec.id);
    this.cgroupPath = `${ctx.cgroupParent}/${spec.id}`;
    this.exited = new Promise((resolve) => (this.settleExited = resolve));
    this.ready = new Promise((resolve) => (this.settleReady = resolve));
  }

  get id(): string {
    return this.spec.id;
  }

  /** Resolves once the container's process runs; on failure releases everything and rejects. */
  async start(): Promise<void> {
    try {
      validateSpecForBundle(this.spec);
      lowerdirOption(this.spec.lowerDirs);
      await this.prepare();
      await this.launch();
      this.ctx.disks?.refillWhen(this.ready);
    } catch (error) {
      this.ctx.disks?.refill();
      const message = error instanceof Error ? error.message : String(error);
      const cleanupErrors = await this.release();
      this.finish({ exitCode: null, reason: "failed", message: withCleanupErrors(message, cleanupErrors) });
      throw new Error(`cannot start container ${this.id}: ${message}`);
    }
  }

  stop(graceMs: number = DEFAULT_GRACE_MS): Promise<ContainerExit> {
    if (this.stopGraceMs === undefined) {
      this.stopGraceMs = graceMs;
      // Before the process runs there is nothing to signal; launch() sends it once started.
      if (this.started) this.sendStopSignals();
    }
    return this.exited;
  }

  private sendStopSignals(): void {
    void this.runcKill("TERM");
    this.killTimer = setTimeout(() => void this.runcKill("KILL"), this.stopGraceMs ?? DEFAULT_GRACE_MS);
  }

  private runcKill(signal: "TERM" | "KILL"): Promise<unknown> {
    // Errors ("container not running") just mean it already exited.
    return tryRun(this.ctx.runcPath, ["--root", this.ctx.names.runcRoot, "kill", this.id, signal]);
  }

  /** netns + overlay + /etc files in parallel, then config.json. */
  private async prepare(): Promise<void> {
    await mkdir(this.ctx.names.containersDir, { recursive: true });
    await mkdir(this.dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
      throw new Error(`state dir ${this.dir} already exists (a crashed worker's leftover? call reap())`);
    });
    this.ownsDir = true;
    const bridged = this.spec.network !== "none";
    const etc = { hosts: join(this.dir, "hosts"), hostname: join(this.dir, "hostname") };
    const userns = this.userns();
    const steps = await Promise.allSettled([
      bridged
        ? this.ctx.network
            .attach(this.id, this.spec.egress, userns && ((netns) => prepareNetns(this.ctx.helper!, netns, this.sysfsPath)))
            .then((network) => (this.network = network))
        : Promise.resolve(),
      Promise.all([writeFile(etc.hostname, `${this.id}\n`), writeFile(etc.hosts, "")]).then(() => this.mountRoot(userns, etc)),
    ]);
    const failed = steps.find((step): step is PromiseRejectedResult => step.status === "rejected");
    if (failed) throw failed.reason;
    await writeFile(etc.hosts, hostsFile(this.id, this.network?.ip));
    const ports = this.spec.ports ?? [];
    const extraEnv: Record<string, string> = ports[0] !== undefined ? { PORT: String(ports[0]) } : {};
    const config = buildConfig(this.mappedSpec ?? this.spec, {
      cgroupPath: this.cgroupPath,
      userns,
      rootfs: this.rootfs,
      ...(userns && this.network && { sysfs: this.sysfsPath }),
      netnsPath: this.network ? join(NETNS_DIR, this.network.netns) : undefined,
      etcFiles: this.mappedEtc ?? etc,
      limitSwap: this.ctx.limitSwap,
      extraEnv,
    });
    await writeFile(join(this.dir, "config.json"), JSON.stringify(config));
    if (this.network) for (const port of ports) this.ports[port] = { host: this.network.ip, port };
  }

  /**
   * Image builds too: their kept upper dir records shifted owners while the step runs and is
   * shifted back after (release(): mount helper --unshift), so the layer records the image's own.
   */
  private userns(): UserNamespace | undefined {
    return this.ctx.userns;
  }

  private get sysfsPath(): string {
    return join(this.dir, "sys");
  }

  private get rootfs(): string {
    return this.userns() ? this.ctx.names.rootfsMountPoint(this.id) : overlayDirs(this.dir).rootfs;
  }

  /**
   * The overlay root and the binds. With a user namespace or a disk bound, through the mount helper:
   * lower layers and binds idmapped (host uid 0 is container root, and container root's writes
   * through a bind are uid 0 on disk), the upper dir on the container's own disk.
   */
  private async mountRoot(userns: UserNamespace | undefined, etc: { hosts: string; hostname: string }): Promise<void> {
    const disks = this.spec.upperDir === undefined ? this.ctx.disks : undefined;
    if (!userns && !disks) {
      await mountOverlay(this.spec.lowerDirs, overlayDirs(this.dir, this.spec.upperDir));
      this.mounted = true;
      return;
    }
    const disk = disks ? await disks.take() : undefined;
    const diskDir = join(this.dir, "disk");
    const dirs = disk
      ? { upper: join(diskDir, "upper"), work: join(diskDir, "work"), rootfs: this.rootfs }
      : { ...overlayDirs(this.dir, this.spec.upperDir), rootfs: this.rootfs };
    if (!disk) {
      await Promise.all([mkdir(dirs.upper, { recursive: true }), mkdir(dirs.work, { recursive: true })]);
      // The merged root takes upper/'s owner: container root (the disk's upper/ is made so too).
      if (userns) await chown(dirs.upper, userns.hostId, userns.hostId);
    }
    const binds = userns ? mappedBinds(this.dir, this.spec.mounts ?? [], etc) : undefined;
    this.mounted = true;
    // The helper makes the mount points; the image file moves meanwhile (a rename, not a mount).
    try {
      await Promise.all([
        disk && adoptImage(disk, this.dir),
        mountContainer(this.ctx.helper!, {
          ...(userns && { userns }),
          ...(disk && { move: { from: disk.mountPoint, to: diskDir } }),
          overlay: { target: dirs.rootfs, upper: dirs.upper, work: dirs.work, lowers: this.spec.lowerDirs },
          binds: binds?.binds ?? [],
        }),
      ]);
    } catch (error) {
      // A disk the helper never moved is still in the pool's dir, where release() does not look.
      if (disk) await releaseSpare(disk);
      throw error;
    }
    if (binds) {
      this.mappedSpec = binds.spec(this.spec);
      this.mappedEtc = binds.etc;
    }
  }

  private async launch(): Promise<void> {
    this.launched = true;
    const launched = launchRunc({
      runcPath: this.ctx.runcPath,
      runcRoot: this.ctx.names.runcRoot,
      bundleDir: this.dir,
      id: this.id,
      onStdout: (line) => {
        if (line.startsWith("runner ready:")) {
          this.settleReady();
          if (this.burstTimer) this.endBurst();
        }
        this.onLog("stdout", line);
      },
      // Until the container runs, stderr carries runc's own errors: hold them back for the message.
      onStderr: (line) => (this.started ? this.onLog("stderr", line) : this.earlyStderr.push(line)),
    });
    const pid = await launched.pid;
    if (pid === undefined) {
      const status = await launched.finished;
      throw new Error(runcFailureMessage(this.dir, this.earlyStderr, status));
    }
    this.pid = pid;
    this.started = true;
    if (this.spec.cpuMillicores > 0 && startingMillicores(this.spec) > this.spec.cpuMillicores) {
      this.burstTimer = setTimeout(() => this.endBurst(), STARTUP_BURST_MAX_MS);
      this.burstTimer.unref();
    }
    for (const line of this.earlyStderr.splice(0)) this.onLog("stderr", line);
    void launched.finished.then((status) => this.onRuncExit(status));
    if (this.stopGraceMs !== undefined) this.sendStopSignals();
  }

  /** Back to the container's own share: it is ready (or took too long to say so). */
  private endBurst(): void {
    clearTimeout(this.burstTimer);
    this.burstTimer = undefined;
    writeCpuQuota(this.ctx.hierarchies, this.cgroupPath, cpuQuotaUs(this.spec.cpuMillicores), CPU_PERIOD_US);
  }

  private async onRuncExit(status: RuncStatus): Promise<void> {
    clearTimeout(this.killTimer);
    clearTimeout(this.burstTimer);
    this.burstTimer = undefined;
    // Read before `runc delete` removes the cgroup (that is why we run with --keep).
    const oomKills = readOomKills(this.ctx.hierarchies, this.cgroupPath);
    let exit = this.classify(status, oomKills);
    const cleanupErrors = await this.release();
    // A kept layer that could not be shifted back must not be taken as the step's result.
    const unshift = cleanupErrors.find((error) => error.startsWith("unshift"));
    if (unshift && exit.reason !== "failed") exit = { exitCode: null, reason: "failed", message: unshift };
    this.finish({ ...exit, ...(cleanupErrors.length > 0 ? { message: withCleanupErrors(exit.message, cleanupErrors) } : {}) });
  }

  private classify(status: RuncStatus, oomKills: number): ContainerExit {
    if (status.code === null) {
      return { exitCode: null, reason: "failed", message: status.spawnError ?? `runc was killed by ${status.signal}` };
    }
    if (oomKills > 0 && status.code !== 0) {
      return { exitCode: status.code, reason: "oom", message: `killed for exceeding its ${this.spec.memoryMiB} MiB memory limit` };
    }
    return { exitCode: status.code, reason: this.stopGraceMs !== undefined ? "stopped" : "exited" };
  }

  /**
   * Releases everything, tolerating pieces that were never made or are already gone. Returns the
   * errors instead of throwing: one failed step must not keep the others from running.
   */
  private async release(): Promise<string[]> {
    const errors: string[] = [];
    if (!this.ownsDir) return errors;
    const step = (what: string, action: () => Promise<unknown>): Promise<void> =>
      action().then(
        () => undefined,
        (error: unknown) => void errors.push(`${what}: ${error instanceof Error ? error.message : String(error)}`),
      );
    const network = this.network;
    await Promise.all([
      // The container must be gone before its root can be unmounted.
      step("runc delete", async () => {
        try {
          if (this.launched) await this.runcDelete();
        } finally {
          // Even if runc failed (or is missing), the overlay is ours to unmount (lazily if still busy).
          if (this.mounted) {
            await unmount(this.rootfs);
            if (this.rootfs !== overlayDirs(this.dir).rootfs) await rmdir(this.rootfs).catch(() => {});
          }
          // The rest: idmapped binds, the writable-layer disk (after the overlay on it), the netns's sysfs.
          for (const point of mountPointsUnder(this.dir)) await unmount(point);
        }
      }),
      network ? step("network", () => this.ctx.network.detach(network)) : Promise.resolve(),
    ]);
    const userns = this.userns();
    if (this.spec.upperDir && userns && this.mounted) {
      const upperDir = this.spec.upperDir;
      await step("unshift", () => run(this.ctx.helper!, ["--unshift", upperDir, `${userns.hostId}:${userns.count}`]));
    }
    await step("cgroups", () => removeCgroupTree(this.ctx.hierarchies, this.cgroupPath));
    // Never rm -rf through a mount that is still there (the overlay would be emptied into its upper dir).
    if (mountPointsUnder(this.dir).length === 0) {
      await step("state dir", () => rm(this.dir, { recursive: true, force: true }));
      // A kept upper dir stays (it is the point); its work dir is overlayfs scratch and goes.
      const keptWork = this.spec.upperDir && overlayDirs(this.dir, this.spec.upperDir).work;
      if (keptWork) await step("work dir", () => rm(keptWork, { recursive: true, force: true }));
    } else {
      errors.push(`state dir: ${this.dir} still has mounts; left in place for reap()`);
    }
    return errors;
  }

  private async runcDelete(): Promise<void> {
    const result = await tryRun(this.ctx.runcPath, ["--root", this.ctx.names.runcRoot, "delete", "--force", this.id]);
    if (result.code !== 0 && !/does not exist|not exist/.test(result.stderr)) {
      await run(this.ctx.runcPath, ["--root", this.ctx.names.runcRoot, "delete", "--force", this.id]);
    }
  }

  private finish(exit: ContainerExit): void {
    this.pid = undefined;
    this.onReleased();
    this.settleReady();
    this.settleExited(exit);
  }
}

function hostsFile(id: string, ip: string | undefined): string {
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${ip ?? "127.0.1.1"}\t${id}\n`;
}

function withCleanupErrors(message: string | undefined, errors: string[]): string | undefined {
  if (errors.length === 0) return message;
  return [message, `cleanup failed: ${errors.join("; ")}`].filter(Boolean).join("; ");
}
