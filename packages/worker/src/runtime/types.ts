import type { EgressPolicy } from "@beta9/protocol";

/**
 * The container runtime contract. Two implementations: `runc` (Linux, root: real isolation) and
 * `process` (plain child processes: no isolation, for macOS/MPS and machines without runc). Both
 * pass the one conformance suite in `conformance.ts`.
 */

/** What to run. Everything a runtime needs; nothing it must look up elsewhere. */
export interface ContainerSpec {
  /** Unique on this worker; [a-z0-9][a-z0-9-]{0,62}. Used in names of cgroups, netns, veths, dirs. */
  id: string;
  /**
   * Read-only image layers, lowest first, as directories on this machine (an unpacked image or a
   * mounted squashfs). The container's root is an overlay over them with its own writable upper
   * dir. The `process` runtime ignores it (it runs on the host's filesystem, in `workdir`).
   */
  lowerDirs: string[];
  /**
   * Keep the container's writable layer in this directory (created if missing) instead of a
   * throw-away one, so that it outlives the container: image builds stack each step's layer on
   * the previous ones. Ignored by the `process` runtime.
   */
  upperDir?: string;
  /** argv; argv[0] is looked up in the container's PATH. */
  command: string[];
  env: Record<string, string>;
  /** Working directory inside the container (default "/"; for `process`, a fresh temp dir). */
  workdir?: string;
  /**
   * Run as this user instead of root (image builds: a Dockerfile's USER). Such a process has no
   * capabilities, like a non-root user in Docker. The `process` runtime ignores it.
   */
  user?: { uid: number; gid: number };
  cpuMillicores: number;
  /**
   * A CPU quota for start-up only (runc): until the container prints its first `runner ready:`
   * line (both runners do, once the user's module is loaded) or STARTUP_BURST_MAX_MS pass, its
   * quota is this instead of cpuMillicores, so a small container starts as fast as a big one;
   * from then on it gets exactly its share. The process runtime sets no quota at all.
   */
  startupBurstMillicores?: number;
  memoryMiB: number;
  /** Max number of processes/threads (default 1024). */
  pidsLimit?: number;
  /**
   * Ports the workload listens on inside the container. The runtime makes each reachable from
   * this machine and reports where in `ContainerHandle.ports`. The workload learns the port it
   * must bind for the first one from env `PORT` (the runtime sets it; `process` remaps it).
   */
  ports?: number[];
  /** Host paths bound into the container (e.g. the runner, a code bundle). */
  mounts?: Mount[];
  /** Device nodes to expose, e.g. "/dev/nvidia0" (GPU containers). */
  devices?: string[];
  /** "bridge" (default): own network namespace with an address on the worker's bridge and NAT egress. */
  network?: "bridge" | "none";
  /**
   * Narrower egress than the runtime's default policy (see runc/egress.ts): `block` allows
   * nothing, `allow` only the listed destinations plus DNS. The `process` runtime cannot filter
   * and refuses a spec that sets it.
   */
  egress?: EgressPolicy;
}

export interface Mount {
  source: string;
  destination: string;
  readOnly: boolean;
}

export type LogStream = "stdout" | "stderr";

/** Why a container ended. */
export type ExitReason =
  | "exited" // the process ended by itself (any exit code)
  | "oom" // killed by the kernel for exceeding its memory limit
  | "stopped" // ended by stop()
  | "failed"; // could not be started, or the runtime lost it

export interface ContainerExit {
  exitCode: number | null;
  reason: ExitReason;
  /** A human-readable detail, e.g. the runc error when it failed to start. */
  message?: string;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface ContainerHandle {
  readonly id: string;
  /** The container's PID 1 as seen from the host, while it runs. */
  readonly pid: number | undefined;
  /** Container port → where this machine reaches it. */
  readonly ports: Readonly<Record<number, HostPort>>;
  /**
   * Resolves once the container has exited AND everything it held (mounts, netns, veth, cgroup,
   * state dir) is released. Never rejects.
   */
  readonly exited: Promise<ContainerExit>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s). Idempotent; resolves like `exited`. */
  stop(graceMs?: number): Promise<ContainerExit>;
}

export interface LogSink {
  /** One call per line (without the trailing newline); a final partial line is flushed at exit. */
  (stream: LogStream, line: string): void;
}

export interface ReapReport {
  containers: number;
  mounts: number;
  netns: number;
  veths: number;
  cgroups: number;
  /** Per-container egress chains (runc/egress.ts). */
  egressChains: number;
}

export interface Runtime {
  readonly name: "runc" | "process";
  /** false for `process`: callers must say so loudly. */
  readonly isolates: boolean;
  /**
   * Starts the container and resolves once its process runs (not when its server is ready).
   * Rejects with a clear message if it cannot start, leaving nothing behind.
   */
  start(spec: ContainerSpec, onLog: LogSink): Promise<ContainerHandle>;
  /** Ids of containers this runtime instance started that have not yet exited. */
  running(): string[];
  /**
   * Removes everything a previous (crashed) worker with the same state dir left: containers,
   * mounts, netns, veths, cgroups, state dirs. Call once at worker start, before start().
   */
  reap(): Promise<ReapReport>;
  /** Stops every running container (graceMs each, in parallel) and releases shared resources. */
  close(graceMs?: number): Promise<void>;
  /**
   * The host argv that runs `command` inside running container `id` (a shell session: see
   * worker/src/shell), with a terminal when `tty`; undefined when the container is not running here.
   * Absent: this runtime cannot open shells.
   */
  shellCommand?(id: string, o: ShellCommandOptions): ShellCommand | undefined;
}

export interface ShellCommand {
  argv: string[];
  /** Called once the command has exited (removes what preparing it made). */
  release?: () => void;
}

export interface ShellCommandOptions {
  command: string[];
  tty: boolean;
  /** Added to the container's own env. */
  env: Record<string, string>;
  cwd?: string;
}
