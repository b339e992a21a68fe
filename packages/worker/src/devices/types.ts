/**
 * Accelerator detection behind one interface. Each detector reads a vendor tool's output or sysfs
 * through an injectable command runner and filesystem root, so tests feed recorded outputs and a
 * temp-dir sysfs tree; a missing tool or garbage output yields no devices and a warning, never a throw.
 */

export interface Device {
  /** The vendor's index (what CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES name). */
  index: number;
  name: string;
  memoryMiB: number;
  memoryFreeMiB?: number;
  uuid?: string;
  /** Device nodes a container needs for this device alone, e.g. ["/dev/nvidia3"]. */
  nodes: string[];
}

export type DeviceVendor = "nvidia" | "amd" | "intel" | "apple" | "google" | "aws";

export interface DeviceGroup {
  vendor: DeviceVendor;
  /** The scheduler's GPU type (one of protocol's GPU_TYPES when recognised, e.g. "H100", "MI300X"). */
  type: string;
  count: number;
  devices: Device[];
  /** Nodes every container using any device of this group needs (e.g. /dev/nvidiactl, /dev/kfd). */
  controlNodes: string[];
  /** Env var that restricts the workload to its assigned indices, e.g. CUDA_VISIBLE_DEVICES. */
  visibleEnv: string[];
}

export interface CommandResult {
  stdout: string;
}

/** Runs a command; rejects (ENOENT, non-zero exit, timeout) when it did not produce output. */
export type CommandRunner = (command: string, args: string[]) => Promise<CommandResult>;

export interface DetectContext {
  run: CommandRunner;
  /** Filesystem root that /dev and /sys are read under ("/" in production, a temp dir in tests). */
  root: string;
  platform: NodeJS.Platform;
  arch: string;
  warn(message: string): void;
}

export interface DeviceDetector {
  readonly name: string;
  detect(ctx: DetectContext): Promise<DeviceGroup[]>;
}
