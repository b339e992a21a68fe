/**
 * What `beta9 up` needs from the OS to isolate containers and build images (runc, iproute2,
 * iptables, conntrack, squashfs-tools, zstd, debootstrap, gcc, e2fsprogs): on Debian or Ubuntu, as root, it installs the
 * missing ones with apt-get, a line per step; elsewhere (or with --no-install) it prints the exact
 * command and goes on with what there is.
 */
import { spawn, spawnSync } from "node:child_process";

/** Debian package → a file that shows it is installed (checked first: no dpkg call on the happy path). */
export const RUNTIME_PACKAGES: Record<string, string> = {
  runc: "runc", iproute2: "ip", iptables: "iptables", conntrack: "conntrack", "squashfs-tools": "mksquashfs", zstd: "zstd", debootstrap: "debootstrap",
  // The worker compiles its small mount helper (user namespaces, idmapped mounts) and formats each
  // container's bounded writable layer as ext4.
  gcc: "cc", e2fsprogs: "mkfs.ext4",
};

export interface OsPackageEnv {
  /** Runs a command, streaming its output; resolves to its exit code. */
  run(cmd: string, args: string[]): Promise<number>;
  /** Whether an executable is on PATH. */
  has(cmd: string): boolean;
  isRoot: boolean;
  platform: NodeJS.Platform;
  say(line: string): void;
}

export const realOsPackageEnv = (say: (line: string) => void): OsPackageEnv => ({
  run: (cmd, args) => new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    child.on("error", () => resolve(127));
    child.on("exit", (code) => resolve(code ?? 1));
  }),
  has: (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0,
  isRoot: process.getuid?.() === 0,
  platform: process.platform,
  say,
});

export type OsPackageOutcome = "present" | "installed" | "skipped" | "failed";

/** Installs what is missing when it can (see the module comment); never throws. */
export async function ensureOsPackages(env: OsPackageEnv, install: boolean, wanted = RUNTIME_PACKAGES): Promise<OsPackageOutcome> {
  if (env.platform !== "linux") return "skipped";
  const missing = Object.entries(wanted).filter(([, bin]) => !env.has(bin)).map(([pkg]) => pkg);
  if (missing.length === 0) return "present";
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (!install) {
    env.say(`missing OS packages: ${missing.join(", ")} (containers then run as plain processes); install them with: ${env.isRoot ? "" : "sudo "}${command}`);
    return "skipped";
  }
  if (!env.has("apt-get")) {
    env.say(`missing OS packages: ${missing.join(", ")}; this system has no apt-get: install them with its package manager, then run beta9 up again`);
    return "skipped";
  }
  if (!env.isRoot) {
    env.say(`missing OS packages: ${missing.join(", ")}; as root, beta9 up installs them; or run: sudo ${command}`);
    return "skipped";
  }
  env.say(`installing OS packages: ${missing.join(" ")} (apt-get update, then install; --no-install skips this)`);
  const steps: [string, string[]][] = [["apt-get", ["update", "-qq"]], ["apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing]]];
  for (const [cmd, args] of steps) {
    env.say(`$ ${cmd} ${args.join(" ")}`);
    const code = await env.run(cmd, args);
    if (code !== 0) {
      env.say(`${cmd} ${args[0]} failed (exit ${code}); going on without ${missing.join(", ")}. Fix it and run: ${command}`);
      return "failed";
    }
  }
  const still = missing.filter((pkg) => !env.has(wanted[pkg]!));
  if (still.length > 0) {
    env.say(`installed, but still missing: ${still.join(", ")}`);
    return "failed";
  }
  env.say(`installed ${missing.join(", ")}`);
  return "installed";
}
