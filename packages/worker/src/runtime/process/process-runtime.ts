/**
 * The `process` Runtime: each container is a plain child process in its own process group, in a
 * fresh temp dir. It isolates NOTHING — no filesystem, network, memory, cpu or pid limits — and
 * exists for machines without runc (macOS/MPS, unprivileged hosts). Callers must say so loudly;
 * `warning` is the text to show.
 *
 * Spec fields it cannot honour are ignored: lowerDirs, mounts, devices, network (the host's),
 * workdir (always a fresh temp dir), cpuMillicores, memoryMiB, pidsLimit. The workload is the
 * process group's leader; when it exits, whatever it left in its group is killed too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constants as osConstants } from "node:os";
import { guardSink, pipeLines } from "../lines.js";
import type { ContainerExit, ContainerHandle, ContainerSpec, HostPort, LogSink, ReapReport, Runtime } from "../types.js";

export const PROCESS_RUNTIME_WARNING =
  "WARNING: the 'process' runtime isolates NOTHING: workloads run as plain host processes with this " +
  "worker's user, see the host's whole filesystem and network, and their memory, cpu and pids limits " +
  "are NOT enforced. Use it only for trusted code on machines where runc is unavailable.";

const DEFAULT_GRACE_MS = 10_000;

export interface ProcessRuntimeOptions {
  /** Parent of the per-container temp dirs (default: the OS temp dir). */
  tempRoot?: string;
}

export class ProcessRuntime implements Runtime {
  readonly name = "process" as const;
  readonly isolates = false;
  /** Shown by callers; the constructor itself logs nothing. */
  readonly warning = PROCESS_RUNTIME_WARNING;
  private readonly containers = new Map<string, ProcessContainer>();
  private readonly tempRoot: string;
  private closing = false;

  constructor(options: ProcessRuntimeOptions = {}) {
    this.tempRoot = options.tempRoot ?? tmpdir();
  }

  async start(spec: ContainerSpec, onLog: LogSink): Promise<ContainerHandle> {
    if (this.closing) throw new Error(`cannot start container ${spec.id}: the runtime is closing`);
    if (spec.command.length === 0) throw new Error(`cannot start container ${spec.id}: command is empty`);
    if (spec.egress) throw new Error(`cannot start container ${spec.id}: blockNetwork and allowList need the runc runtime (the process runtime cannot filter a process's network)`);
    if (this.containers.has(spec.id)) throw new Error(`cannot start container ${spec.id}: a container with this id is running`);
    const container = new ProcessContainer(spec, guardSink(onLog), () => {
      if (this.containers.get(spec.id) === container) this.containers.delete(spec.id);
    });
    this.containers.set(spec.id, container);
    await container.start(this.tempRoot);
    return container;
  }

  running(): string[] {
    return [...this.containers.keys()];
  }

  /** A crashed worker's process groups are unknowable (no state is kept); nothing to reap. */
  async reap(): Promise<ReapReport> {
    return { containers: 0, mounts: 0, netns: 0, veths: 0, cgroups: 0, egressChains: 0 };
  }

  async close(graceMs?: number): Promise<void> {
    this.closing = true;
    await Promise.all([...this.containers.values()].map((container) => container.stop(graceMs)));
  }
}

class ProcessContainer implements ContainerHandle {
  pid: number | undefined;
  ports: Record<number, HostPort> = {};
  readonly exited: Promise<ContainerExit>;
  private settleExited!: (exit: ContainerExit) => void;
  private child: ChildProcess | undefined;
  private workdir: string | undefined;
  private stopGraceMs: number | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly spec: ContainerSpec,
    private readonly onLog: LogSink,
    private readonly onReleased: () => void,
  ) {
    this.exited = new Promise((resolve) => (this.settleExited = resolve));
  }

  get id(): string {
    return this.spec.id;
  }

  async start(tempRoot: string): Promise<void> {
    try {
      this.workdir = await mkdtemp(join(tempRoot, `b9proc-${this.id}-`));
      const env = await this.buildEnv();
      await this.spawnChild(env);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await this.release();
      this.finish({ exitCode: null, reason: "failed", message });
      throw new Error(`cannot start container ${this.id}: ${message}`);
    }
  }

  /** spec.env, PATH from the host if the spec has none, PORT remapped to a free host port. */
  private async buildEnv(): Promise<Record<string, string>> {
    const env: Record<string, string> = { ...this.spec.env };
    if (env.PATH === undefined && process.env.PATH !== undefined) env.PATH = process.env.PATH;
    const [first, ...others] = this.spec.ports ?? [];
    if (first !== undefined) {
      const port = await freePort();
      env.PORT = String(port);
      this.ports[first] = { host: "127.0.0.1", port };
    }
    // Only PORT can be remapped (the workload learns nothing else); other ports stay as they are.
    for (const other of others) this.ports[other] = { host: "127.0.0.1", port: other };
    return env;
  }

  private spawnChild(env: Record<string, string>): Promise<void> {
    const [file, ...args] = this.spec.command as [string, ...string[]];
    // detached: its own process group, so stop() can signal everything the workload forked.
    const child = spawn(file, args, { cwd: this.workdir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on("exit", (code, signal) => {
        // The workload is over when its main process is; take whatever it left in its group with it.
        this.killGroup("SIGKILL");
        resolve({ code, signal });
      });
    });
    const finished = Promise.all([exit, pipeLines(child.stdout!, (l) => this.onLog("stdout", l)), pipeLines(child.stderr!, (l) => this.onLog("stderr", l))]);
    return new Promise((resolve, reject) => {
      child.once("error", (error) => reject(new Error(`cannot run ${JSON.stringify(file)}: ${error.message}`)));
      child.once("spawn", () => {
        this.pid = child.pid;
        void finished.then(([status]) => this.onExit(status));
        // close() may have asked to stop while we were spawning.
        if (this.stopGraceMs !== undefined) this.sendStopSignals();
        resolve();
      });
    });
  }

  stop(graceMs: number = DEFAULT_GRACE_MS): Promise<ContainerExit> {
    if (this.stopGraceMs === undefined) {
      this.stopGraceMs = graceMs;
      if (this.pid !== undefined) this.sendStopSignals();
    }
    return this.exited;
  }

  private sendStopSignals(): void {
    this.killGroup("SIGTERM");
    this.killTimer = setTimeout(() => this.killGroup("SIGKILL"), this.stopGraceMs ?? DEFAULT_GRACE_MS);
  }

  private killGroup(signal: NodeJS.Signals): void {
    if (this.child?.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // ESRCH: the group is already gone
    }
  }

  private async onExit(status: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    clearTimeout(this.killTimer);
    // Shell convention (and what runc reports): death by signal N is exit code 128+N.
    const exitCode = status.code ?? 128 + (status.signal ? (osConstants.signals[status.signal] ?? 0) : 0);
    await this.release();
    this.finish({ exitCode, reason: this.stopGraceMs !== undefined ? "stopped" : "exited" });
  }

  private async release(): Promise<void> {
    if (this.workdir) await rm(this.workdir, { recursive: true, force: true }).catch(() => undefined);
  }

  private finish(exit: ContainerExit): void {
    this.pid = undefined;
    this.onReleased();
    this.settleExited(exit);
  }
}

/** A port the kernel just handed out on 127.0.0.1 (free at the time of asking). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
