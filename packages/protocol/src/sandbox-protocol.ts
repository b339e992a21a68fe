/**
 * What the sandbox daemon (packages/runner/src/sandbox) answers about processes and files; the
 * gateway passes these through unchanged and the SDK hands them to users.
 */

export interface ProcessInfo {
  pid: number;
  cmd: string;
  args: string[];
  cwd: string;
  running: boolean;
  exitCode: number | null;
  signal: string | null;
  startedAt: string;
  endedAt: string | null;
}

export interface FileInfo {
  name: string;
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  mode: number;
  modifiedAt: string;
}
