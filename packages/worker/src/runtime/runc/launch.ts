/**
 * Runs `runc run --keep` in the foreground as our child: runc stays the container's parent, so its
 * exit status IS the container's exit code (with `run -d` it is lost), and the container inherits
 * its stdout/stderr pipes directly. `--keep` leaves the stopped container (and its cgroup) in place
 * until we `runc delete` it, so the OOM counter can still be read after exit.
 *
 * Why not conmon (2 MB per container instead of runc's ~10 MB): conmon writes logs to a file we
 * would have to tail (extra latency, rotation, partial-line handling) and the exit code to an
 * exit file we would have to watch, and needs the sync-pipe protocol to avoid racing `runc state`.
 * Its real advantage — containers outliving a worker restart and being re-attached — is one the
 * contract does not use: reap() removes a dead worker's containers. Pipes + a child exit status
 * are the simplest thing that is reliable.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, watch } from "node:fs";
import { join } from "node:path";
import { pipeLines } from "../lines.js";

export interface RuncStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when runc itself could not be spawned. */
  spawnError?: string;
}

export interface LaunchedRunc {
  child: ChildProcess;
  /** The container's PID 1 once runc wrote the pid file (create+start succeeded), or undefined if runc exited first. */
  pid: Promise<number | undefined>;
  /** Resolves after runc exited AND both pipes drained (so every log line was delivered). */
  finished: Promise<RuncStatus>;
}

export interface LaunchArgs {
  runcPath: string;
  runcRoot: string;
  bundleDir: string;
  id: string;
  onStdout: (line: string) => void;
  onStderr: (line: string) => void;
}

export function pidFilePath(bundleDir: string): string {
  return join(bundleDir, "pid");
}

export function runcLogPath(bundleDir: string): string {
  return join(bundleDir, "runc.log");
}

export function launchRunc(args: LaunchArgs): LaunchedRunc {
  const pidFile = pidFilePath(args.bundleDir);
  // Watch before spawning so the pid file's appearance cannot be missed; inotify, not polling.
  const pidWatch = watchForFile(args.bundleDir, "pid");
  const runcArgs = ["--root", args.runcRoot, "--log", runcLogPath(args.bundleDir), "--log-format", "json"];
  runcArgs.push("run", "--keep", "--bundle", args.bundleDir, "--pid-file", pidFile, args.id);
  const child = spawn(args.runcPath, runcArgs, { stdio: ["ignore", "pipe", "pipe"] });
  const exit = new Promise<RuncStatus>((resolve) => {
    child.on("error", (error) => resolve({ code: null, signal: null, spawnError: `cannot run ${args.runcPath}: ${error.message}` }));
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  const finished = Promise.all([exit, pipeLines(child.stdout!, args.onStdout), pipeLines(child.stderr!, args.onStderr)]).then(
    ([status]) => status,
  );
  const pid = Promise.race([pidWatch.appeared, finished.then(() => undefined)]).then(() => {
    pidWatch.close();
    // runc writes the pid file after create+start and before it waits for the container, so its
    // presence (even after a very short-lived container exited) means the process really started.
    return readPid(pidFile);
  });
  return { child, pid, finished };
}

function readPid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function watchForFile(dir: string, name: string): { appeared: Promise<void>; close: () => void } {
  let resolveAppeared!: () => void;
  const appeared = new Promise<void>((resolve) => (resolveAppeared = resolve));
  // runc writes ".pid" then renames it to "pid": the rename shows up as an event for "pid".
  const watcher = watch(dir, (_event, filename) => {
    if (filename === name) resolveAppeared();
  });
  watcher.on("error", () => {});
  return { appeared, close: () => watcher.close() };
}

/** The reason runc gave for a failed start: its last error log entry, else the tail of its stderr. */
export function runcFailureMessage(bundleDir: string, stderrLines: string[], status: RuncStatus): string {
  if (status.spawnError) return status.spawnError;
  let message: string | undefined;
  try {
    for (const line of readFileSync(runcLogPath(bundleDir), "utf8").split("\n")) {
      if (!line) continue;
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === "error" && entry.msg) message = entry.msg;
    }
  } catch {
    // no log written: fall back to stderr
  }
  message ??= stderrLines.slice(-5).join("\n").trim();
  return message || `runc exited with ${status.code ?? status.signal} before the container started`;
}
