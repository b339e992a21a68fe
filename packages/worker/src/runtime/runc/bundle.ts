/**
 * The OCI bundle's config.json for one container: `runc spec`'s defaults (mounts, masked and
 * read-only /proc paths) hardened with a minimal capability set, no_new_privs and our seccomp
 * profile, plus the spec's command, env, mounts, devices and cgroup limits.
 */
import { statSync } from "node:fs";
import { isAbsolute } from "node:path";
import type { ContainerSpec, Mount } from "../types.js";
import { defaultSeccompProfile } from "./seccomp.js";

export const DEFAULT_PIDS_LIMIT = 1024;
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const CPU_PERIOD_US = 100_000;
/** The kernel refuses a CFS quota below 1 ms. */
const MIN_CPU_QUOTA_US = 1_000;

/** The CFS quota (µs per CPU_PERIOD_US) of a share in millicores. */
export const cpuQuotaUs = (millicores: number): number => Math.max(MIN_CPU_QUOTA_US, Math.round(millicores * 100));

/**
 * The CFS weight of a share: cpu.shares in proportion to the millicores reserved (1 CPU = 1024; runc
 * turns it into cpu.weight on cgroup v2). Under contention every container then gets at least what
 * it reserved, whatever quota others run on (a start-up burst included): a burst uses idle CPU only.
 */
export const cpuShares = (millicores: number): number => Math.max(2, Math.round((millicores * 1024) / 1000));

/** The quota a container starts with: its start-up burst when it has one above its share. */
export const startingMillicores = (spec: ContainerSpec): number => Math.max(spec.cpuMillicores, spec.startupBurstMillicores ?? 0);

/**
 * What root in the container keeps: enough to run ordinary software as root (chown files it owns
 * in its own fs, switch users, bind low ports, signal its own processes). Notably absent:
 * SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_MODULE, SYS_PTRACE, SYS_TIME, SYS_RAWIO, MKNOD, SETFCAP.
 */
export const CONTAINER_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_AUDIT_WRITE",
];

/** Same as `runc spec`: hide kernel internals and make kernel tunables read-only. */
const MASKED_PATHS = [
  "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
  "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
];
const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** `runc spec`'s mounts: a minimal /dev on tmpfs (runc adds null, zero, full, tty, random, urandom), read-only /sys. */
const BASE_MOUNTS = [
  { destination: "/proc", type: "proc", source: "proc" },
  { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
  { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
  { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
  { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
  { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
];

/**
 * In a user namespace, sysfs can only be mounted for a netns the namespace owns, and a bridged
 * container's netns is the host's: the mount helper mounts a read-only sysfs of that netns on the
 * host side (BundleOptions.sysfs) and the container binds it.
 */
function sysfsAsBind(source: string): (mount: (typeof BASE_MOUNTS)[number]) => object {
  return (mount) => (mount.type === "sysfs" ? { destination: "/sys", type: "bind", source, options: ["rbind", "nosuid", "noexec", "nodev", "ro"] } : mount);
}

export interface BundleOptions {
  /** Absolute cgroup path for this container, e.g. "/beta9/w1/ct1". */
  cgroupPath: string;
  /** Path of the netns to join ("bridge"), or undefined for a fresh netns with only lo ("none"). */
  netnsPath: string | undefined;
  /** Files the runtime generated for this container (hosts, hostname), bound over /etc. */
  etcFiles: { hosts: string; hostname: string };
  /** Whether `swap` can be set (see cgroups.ts canLimitSwap). */
  limitSwap: boolean;
  /** Extra env the runtime adds (PORT). */
  extraEnv: Record<string, string>;
  /** A sysfs mounted for the container's netns, bound at /sys instead of mounting one (see sysfsAsBind). */
  sysfs?: string;
  /** The mounted root, when not the bundle's rootfs/ (see RuntimeNames.rootfsParent). */
  rootfs?: string;
  /** Run in a user namespace with this mapping (container root is an unprivileged host uid). */
  userns?: { hostId: number; count: number } | undefined;
}

export function buildConfig(spec: ContainerSpec, options: BundleOptions): object {
  return {
    ociVersion: "1.0.2-dev",
    process: buildProcess(spec, options.extraEnv),
    root: { path: options.rootfs ?? "rootfs", readonly: false },
    hostname: spec.id,
    mounts: [...(options.sysfs ? BASE_MOUNTS.map(sysfsAsBind(options.sysfs)) : BASE_MOUNTS), ...etcMounts(options.etcFiles), ...(spec.mounts ?? []).map(bindMount)],
    linux: {
      cgroupsPath: options.cgroupPath,
      resources: buildResources(spec, options.limitSwap),
      namespaces: buildNamespaces(options.netnsPath, options.userns !== undefined),
      ...(options.userns && {
        uidMappings: [{ containerID: 0, hostID: options.userns.hostId, size: options.userns.count }],
        gidMappings: [{ containerID: 0, hostID: options.userns.hostId, size: options.userns.count }],
      }),
      devices: (spec.devices ?? []).map(describeDevice),
      seccomp: defaultSeccompProfile(),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}

function buildProcess(spec: ContainerSpec, extraEnv: Record<string, string>): object {
  const env = { ...spec.env, ...extraEnv };
  env.PATH ??= DEFAULT_PATH;
  env.HOME ??= "/root";
  env.HOSTNAME ??= spec.id;
  const caps = [...CONTAINER_CAPABILITIES];
  const user = spec.user ?? { uid: 0, gid: 0 };
  // A non-root user keeps the bounding set but holds no capabilities, as under Docker.
  const held = user.uid === 0 ? caps : [];
  return {
    terminal: false,
    user,
    args: spec.command,
    env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    cwd: spec.workdir ?? "/",
    capabilities: { bounding: caps, effective: held, permitted: held, inheritable: [], ambient: [] },
    // No rlimits: the container inherits runc's (the worker's). Raising them needs privileges the
    // worker may not have (setting 65536 failed with EPERM under a 1024 hard limit).
    noNewPrivileges: true,
  };
}

function buildResources(spec: ContainerSpec, limitSwap: boolean): object {
  const memoryBytes = spec.memoryMiB * 1024 * 1024;
  const resources: Record<string, unknown> = {
    // memory = memory+swap: the container cannot swap its way past its limit.
    memory: limitSwap ? { limit: memoryBytes, swap: memoryBytes } : { limit: memoryBytes },
    pids: { limit: spec.pidsLimit ?? DEFAULT_PIDS_LIMIT },
    devices: [{ allow: false, access: "rwm" }, ...(spec.devices ?? []).map(allowDevice)],
  };
  if (spec.cpuMillicores > 0) {
    resources.cpu = { period: CPU_PERIOD_US, quota: cpuQuotaUs(startingMillicores(spec)), shares: cpuShares(spec.cpuMillicores) };
  }
  return resources;
}

function buildNamespaces(netnsPath: string | undefined, userns: boolean): object[] {
  return [
    ...(userns ? [{ type: "user" }] : []),
    { type: "pid" },
    netnsPath ? { type: "network", path: netnsPath } : { type: "network" },
    { type: "ipc" },
    { type: "uts" },
    { type: "mount" },
    { type: "cgroup" },
  ];
}

function etcMounts(files: { hosts: string; hostname: string }): object[] {
  return [
    { destination: "/etc/hosts", type: "bind", source: files.hosts, options: ["rbind", "rw", "nosuid", "nodev"] },
    { destination: "/etc/hostname", type: "bind", source: files.hostname, options: ["rbind", "rw", "nosuid", "nodev"] },
  ];
}

/** Always nosuid,nodev: a bound host dir must not smuggle setuid binaries or device nodes in. */
export function bindMount(mount: Mount): object {
  return {
    destination: mount.destination,
    type: "bind",
    source: mount.source,
    options: ["rbind", mount.readOnly ? "ro" : "rw", "nosuid", "nodev"],
  };
}

interface DeviceNode {
  path: string;
  type: "c" | "b";
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** Reads the host node's type and numbers; a path that is not a device is a spec error. */
export function describeDevice(path: string): DeviceNode {
  const stat = statSync(path, { bigint: true });
  if (!stat.isCharacterDevice() && !stat.isBlockDevice()) throw new Error(`${path} is not a device node`);
  const rdev = stat.rdev;
  // glibc's major()/minor() encoding of dev_t.
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { path, type: stat.isCharacterDevice() ? "c" : "b", major, minor, fileMode: Number(stat.mode & 0o777n), uid: 0, gid: 0 };
}

function allowDevice(path: string): object {
  const node = describeDevice(path);
  return { allow: true, type: node.type, major: node.major, minor: node.minor, access: "rwm" };
}

/** Rejects specs runc would fail on obscurely, with a message that names the field. */
export function validateSpecForBundle(spec: ContainerSpec): void {
  if (spec.command.length === 0) throw new Error("command is empty");
  if (!Number.isFinite(spec.memoryMiB) || spec.memoryMiB <= 0) throw new Error(`memoryMiB must be > 0 (got ${spec.memoryMiB})`);
  if (spec.workdir !== undefined && !isAbsolute(spec.workdir)) throw new Error(`workdir ${spec.workdir} must be absolute`);
  for (const mount of spec.mounts ?? []) {
    if (!isAbsolute(mount.source) || !isAbsolute(mount.destination)) {
      throw new Error(`mount ${mount.source} -> ${mount.destination}: both paths must be absolute`);
    }
  }
  for (const device of spec.devices ?? []) describeDevice(device);
}
