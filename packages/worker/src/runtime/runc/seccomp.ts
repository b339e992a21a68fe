/**
 * The default seccomp profile (OCI `linux.seccomp`), an allow-list: the syscalls of
 * seccomp-allowed.ts pass; the ones a workload never needs and that widen the kernel attack
 * surface (mounts, modules, BPF, namespaces, keyrings, clock setting, tracing other processes …)
 * get EPERM; any other, a syscall newer than the list included, gets ENOSYS (libc then falls back).
 * Capabilities already block most of the denied ones for root-in-container; the filter is the
 * second wall, and it also closes what capabilities do not (unshare/clone into a new user
 * namespace, userfaultfd, perf_event_open).
 *
 * runc ignores names libseccomp does not know for an architecture, so one list serves all.
 */
import { ALLOWED_SYSCALLS } from "./seccomp-allowed.js";

const EPERM = 1;
const ENOSYS = 38;

/** Syscalls denied outright. */
export const DENIED_SYSCALLS: readonly string[] = [
  // filesystems and mounts, old and new mount API (chroot stays allowed: harmless in a mount namespace)
  "mount", "umount", "umount2", "pivot_root",
  "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
  "open_by_handle_at", "name_to_handle_at", "quotactl", "quotactl_fd", "swapon", "swapoff", "nfsservctl",
  // kernel, modules, machine state
  "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
  "get_kernel_syms", "query_module", "reboot", "acct", "syslog", "iopl", "ioperm", "vm86", "vm86old",
  "uselib", "_sysctl", "lookup_dcookie", "bpf", "perf_event_open", "userfaultfd",
  // namespaces (clone with namespace flags is handled below)
  "unshare", "setns",
  // keyrings are not namespaced
  "keyctl", "add_key", "request_key",
  // clocks are not namespaced
  "clock_settime", "clock_settime64", "settimeofday", "stime", "clock_adjtime", "clock_adjtime64",
  // looking into / tampering with other processes
  "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
  // NUMA placement needs CAP_SYS_NICE anyway; deny like Docker does
  "mbind", "set_mempolicy", "move_pages", "migrate_pages",
  "fanotify_init",
];

/** CLONE_NEW* flags: a clone that creates a namespace is refused, plain fork/thread creation is not. */
const CLONE_NAMESPACE_FLAGS = [
  0x00020000, // CLONE_NEWNS
  0x02000000, // CLONE_NEWCGROUP
  0x04000000, // CLONE_NEWUTS
  0x08000000, // CLONE_NEWIPC
  0x10000000, // CLONE_NEWUSER
  0x20000000, // CLONE_NEWPID
  0x40000000, // CLONE_NEWNET
];

/** personality(2) values a normal program uses: PER_LINUX, PER_LINUX32, UNAME26 and their OR, and the 0xffffffff query. */
const PERSONALITY_ALLOWED_BITS = 0x00000008 | 0x00020000;

interface SeccompArg {
  index: number;
  value: number;
  valueTwo: number;
  op: "SCMP_CMP_MASKED_EQ";
}

type SeccompRule =
  | { names: string[]; action: "SCMP_ACT_ERRNO"; errnoRet: number; args?: SeccompArg[] }
  | { names: string[]; action: "SCMP_ACT_ALLOW"; args?: SeccompArg[] };

export interface SeccompProfile {
  defaultAction: "SCMP_ACT_ERRNO";
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

/** The personality values a normal program passes (PER_LINUX, PER_LINUX32, UNAME26, both), and the query. */
const PERSONALITY_ALLOWED = [0, 0x00000008, 0x00020000, 0x00020008, 0xffffffff];

/** `(arg & mask) == expected`. Several conditions on the same arg index are OR'ed by runc (one rule each). */
function maskedEq(mask: number, expected: number): SeccompArg {
  return { index: 0, value: mask, valueTwo: expected, op: "SCMP_CMP_MASKED_EQ" };
}

/**
 * Conditions matching every personality value except the allowed ones, using single-mask tests
 * only (libseccomp has no "not in set"): a bit outside the allowed ones set while bit 31 is clear,
 * or bit 31 set while some other bit is clear (anything with bit 31 but the all-ones query).
 */
function personalityDenyConditions(): SeccompArg[] {
  const conditions: SeccompArg[] = [];
  const bit31 = 0x80000000;
  for (let bit = 0; bit < 31; bit++) {
    const flag = 2 ** bit;
    if ((PERSONALITY_ALLOWED_BITS & flag) === 0) conditions.push(maskedEq(flag + bit31, flag));
    conditions.push(maskedEq(flag + bit31, bit31));
  }
  return conditions;
}

/**
 * The native ABI only: 32-bit (i386, x32, arm32) syscalls are refused outright. Their compat layer
 * is extra kernel surface few workloads need, and each architecture listed makes runc compile the
 * whole allow-list again at every container start (three of them cost ~25 ms per start here).
 */
function architecturesFor(arch: string): string[] {
  if (arch === "arm64") return ["SCMP_ARCH_AARCH64"];
  return ["SCMP_ARCH_X86_64"];
}

export function defaultSeccompProfile(arch: string = process.arch): SeccompProfile {
  const namespaceFlags = CLONE_NAMESPACE_FLAGS.reduce((all, flag) => all | flag, 0);
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: ENOSYS,
    architectures: architecturesFor(arch),
    syscalls: [
      { names: [...ALLOWED_SYSCALLS], action: "SCMP_ACT_ALLOW" },
      { names: [...DENIED_SYSCALLS], action: "SCMP_ACT_ERRNO", errnoRet: EPERM },
      // Plain fork and thread creation pass; a clone that creates a namespace is refused.
      { names: ["clone"], action: "SCMP_ACT_ALLOW", args: [maskedEq(namespaceFlags, 0)] },
      { names: ["clone"], action: "SCMP_ACT_ERRNO", errnoRet: EPERM, args: CLONE_NAMESPACE_FLAGS.map((flag) => maskedEq(flag, flag)) },
      // clone3 passes its flags in a struct seccomp cannot inspect; ENOSYS makes libc fall back to clone.
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
      // io_uring bypasses the filter for the operations it performs; ENOSYS makes libuv & co. fall back.
      { names: ["io_uring_setup", "io_uring_enter", "io_uring_register"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
      { names: ["personality"], action: "SCMP_ACT_ALLOW", args: PERSONALITY_ALLOWED.map((value) => maskedEq(0xffffffff, value)) },
      { names: ["personality"], action: "SCMP_ACT_ERRNO", errnoRet: EPERM, args: personalityDenyConditions() },
    ],
  };
}
