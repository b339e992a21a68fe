/**
 * Writable-layer disks: each container's overlay upper dir lives on its own sparse ext4 file,
 * loop-mounted nosuid,nodev, so a container that writes past its bound gets ENOSPC inside and the
 * host disk holds at most the bound. (This kernel has no CONFIG_QUOTA, so project quotas on one
 * shared filesystem, Docker's overlay2 `size=`, are not available.)
 *
 * mkfs + loop mount cost ~70 ms, a third of a cold start, so a few disks are made ahead of time
 * and a start only moves one into its container dir (mount-helper --move); the spare is replaced
 * in the background once that container runs. The first spare is made after reap() (a runtime
 * makes nothing on the host before that), or by the first start if reap() never ran. The image file moves with it and goes with the container dir.
 */
import { chown, mkdir, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../exec.js";
import { mountPointsUnder, unmount } from "./overlay.js";

export const DEFAULT_WRITABLE_LAYER_MIB = 10 * 1024;
/** The longest a taken spare waits to be replaced for its container to say it is ready. */
export const REFILL_WAIT_MS = 1000;

export interface Disk {
  /** Where it is mounted (upper/ and work/ inside). */
  mountPoint: string;
  image: string;
}

export class WritableLayerDisks {
  private readonly spares: Promise<Disk>[] = [];
  private next = 0;
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    /** The pool's own dir (spares live here until taken). */
    readonly dir: string,
    readonly sizeMiB: number,
    /** Owner of upper/ (the container root's host uid with a user namespace, else 0). */
    private readonly rootId: number,
    private readonly spareCount = 1,
  ) {}

  /**
   * A mounted disk for one container; the caller moves it (and its image) into its own dir, and
   * calls refillWhen() once its container runs. A take() with no spare left makes its disk itself.
   */
  take(): Promise<Disk> {
    if (this.closed) return Promise.reject(new Error("the writable-layer pool is closed"));
    return this.spares.shift() ?? this.make(`d${this.next++}`);
  }

  /**
   * Replaces the spare a container took once `ready` settles or after `maxMs`, whichever is
   * first: one disk per take, so another container's readiness never formats a disk while this
   * one still starts. Formatting costs ~70 ms of CPU, and a container's runtime (Node, Python) is
   * still starting when its process runs: measured here, a refill at that moment made the next
   * 150 ms start 20 ms slower.
   */
  refillWhen(ready: Promise<unknown>, maxMs = REFILL_WAIT_MS): void {
    if (this.closed) return;
    let fired = false;
    const fire = (): void => {
      if (fired) return;
      fired = true;
      clearTimeout(timer);
      this.timers.delete(timer);
      this.refill();
    };
    const timer = setTimeout(fire, maxMs);
    timer.unref();
    this.timers.add(timer);
    void ready.then(fire, fire);
  }

  refill(): void {
    while (!this.closed && this.spares.length < this.spareCount) {
      const made = this.make(`d${this.next++}`);
      made.catch(() => {}); // reported to whoever takes it
      this.spares.push(made);
    }
  }

  private async make(name: string): Promise<Disk> {
    const image = join(this.dir, `${name}.img`);
    const mountPoint = join(this.dir, name);
    await mkdir(mountPoint, { recursive: true, mode: 0o700 });
    await rm(image, { force: true });
    await writeFile(image, "", { mode: 0o600 });
    await truncate(image, this.sizeMiB * 1024 * 1024);
    // No journal (the layer is thrown away with the container), no reserved blocks, lazy init.
    await run("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", "-m", "0", "-E", "lazy_itable_init=1,nodiscard", image]);
    await run("mount", ["-o", "loop,nosuid,nodev", image, mountPoint]);
    await Promise.all([mkdir(join(mountPoint, "upper")), mkdir(join(mountPoint, "work"))]);
    // The merged root takes upper/'s owner: it must be the container's root.
    await chown(join(mountPoint, "upper"), this.rootId, this.rootId);
    return { mountPoint, image };
  }

  /** Unmounts and deletes the spares (and anything a crashed worker left in the pool dir). */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled(this.spares.splice(0));
    await removePoolDir(this.dir);
  }
}

/** Also used by reap(): a killed worker's spares are still mounted. */
export async function removePoolDir(dir: string): Promise<number> {
  const points = mountPointsUnder(dir);
  for (const point of points) await unmount(point);
  if (mountPointsUnder(dir).length === 0) await rm(dir, { recursive: true, force: true });
  return points.length;
}

/** Moves a taken disk's image into the container dir (same filesystem: a rename), so it goes with it. */
export async function adoptImage(disk: Disk, containerDir: string): Promise<void> {
  await rename(disk.image, join(containerDir, "disk.img"));
}

/** A taken disk that never reached its container: unmounted and deleted (wherever its image is). */
export async function releaseSpare(disk: Disk): Promise<void> {
  await removePoolDir(disk.mountPoint);
  await rm(disk.image, { force: true });
}
