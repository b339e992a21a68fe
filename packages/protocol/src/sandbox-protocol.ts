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

/**
 * Exposed ports: the gateway calls the daemon's fixed route DAEMON_PROXY_PATH and names the port
 * and the caller's raw path (query included) in these headers. Keeping them out of the daemon's
 * URL means no path the caller sends can reach the daemon's own API.
 */
export const DAEMON_PROXY_PATH = "/proxy";
export const PROXY_PORT_HEADER = "x-beta9-proxy-port";
export const PROXY_PATH_HEADER = "x-beta9-proxy-path";
