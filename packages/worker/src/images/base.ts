/**
 * The default base image for `new Image()`: Debian bookworm (debootstrap minbase) with python3,
 * built once per version into a cache dir. The build happens in a temp dir that is renamed into
 * place at the end, so the cache holds a complete rootfs or nothing; concurrent calls in one
 * process share one build.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { findDebianMirror } from "./apt-sources.js";
import { run } from "../exec.js";
import { unmountAllUnder } from "./mounts.js";

/** Part of the cache key: bump it when the recipe below changes. */
export const BASE_IMAGE_VERSION = "bookworm-minbase-python3-1";
const SUITE = "bookworm";

export interface BaseImageOptions {
  cacheDir: string;
  /** Defaults to the bookworm mirror in this machine's apt sources. */
  mirror?: string;
  onProgress?: (line: string) => void;
  version?: string;
}

export interface BaseImage {
  rootfs: string;
  version: string;
  /** false when this call built it. */
  cached: boolean;
}

const inFlight = new Map<string, Promise<BaseImage>>();

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

export async function ensureBaseImage(options: BaseImageOptions): Promise<BaseImage> {
  const version = options.version ?? BASE_IMAGE_VERSION;
  const finalDir = join(resolve(options.cacheDir), version);
  if (await exists(join(finalDir, "rootfs"))) return { rootfs: join(finalDir, "rootfs"), version, cached: true };
  let build = inFlight.get(finalDir);
  if (!build) {
    build = buildBase(options, version, finalDir).finally(() => inFlight.delete(finalDir));
    inFlight.set(finalDir, build);
  }
  return build;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes temp dirs of builds whose process is gone (unmounting anything left inside first). */
async function removeStaleBuilds(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const m = /^\.build-.*-(\d+)-[0-9a-f]+$/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    await unmountAllUnder(join(cacheDir, name));
    await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

async function buildBase(options: BaseImageOptions, version: string, finalDir: string): Promise<BaseImage> {
  const say = options.onProgress ?? (() => {});
  const cacheDir = resolve(options.cacheDir);
  await mkdir(cacheDir, { recursive: true });
  await removeStaleBuilds(cacheDir);
  const work = join(cacheDir, `.build-${version}-${process.pid}-${randomBytes(4).toString("hex")}`);
  const rootfs = join(work, "rootfs");
  try {
    const mirror = options.mirror ?? (await findDebianMirror(SUITE));
    say(`base image ${version}: debootstrap --variant=minbase ${SUITE} from ${mirror}`);
    await mkdir(work, { recursive: true });
    await run("debootstrap", ["--variant=minbase", SUITE, rootfs, mirror], { onLine: say });
    say(`base image ${version}: installing python3`);
    await inChroot(rootfs, say);
    await rename(work, finalDir).catch(async (err: NodeJS.ErrnoException) => {
      // Another process finished the same build first: theirs is as good as ours.
      if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
    });
    say(`base image ${version}: ready`);
    return { rootfs: join(finalDir, "rootfs"), version, cached: false };
  } finally {
    await unmountAllUnder(work).catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
}

/** apt-get inside the new rootfs, with /proc mounted and the host's DNS; both undone after. */
async function inChroot(rootfs: string, say: (line: string) => void): Promise<void> {
  const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND: "noninteractive", LANG: "C.UTF-8" };
  const chroot = (...args: string[]): Promise<string> => run("chroot", [rootfs, ...args], { env, onLine: say });
  const resolvConf = join(rootfs, "etc/resolv.conf");
  const policy = join(rootfs, "usr/sbin/policy-rc.d");
  await run("mount", ["-t", "proc", "proc", join(rootfs, "proc")]);
  try {
    await rm(resolvConf, { force: true }); // may be a dangling symlink; never write through it
    await copyFile("/etc/resolv.conf", resolvConf);
    await writeFile(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 }); // no service starts in a build
    await chroot("apt-get", "update");
    await chroot("apt-get", "install", "-y", "--no-install-recommends", "python3");
    await chroot("apt-get", "clean");
  } finally {
    await run("umount", [join(rootfs, "proc")]).catch(() => run("umount", ["--lazy", join(rootfs, "proc")]));
    await rm(policy, { force: true });
    // Empty, not the build host's: the runtime bind-mounts the real one over it.
    await rm(resolvConf, { force: true });
    await writeFile(resolvConf, "");
  }
  // The lists are stale by the time the image is used, and every apt step runs `apt-get update`.
  await rm(join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
  await mkdir(join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
}
