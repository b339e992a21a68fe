/**
 * `Volume`: a named file tree of the workspace, mounted read-write where you say in sandboxes and
 * workloads on any worker. A container sees the volume as it was when it started; what it changes
 * is committed to the gateway when it ends (per file, last writer wins), and containers that start
 * afterwards see it. Inside a container, `commit()` publishes its changes now and `reload()` takes
 * in what others committed (volume-sync.ts). Manage files from outside with `client.volumes` or `beta9 cp`.
 *
 * @example
 * const cache = new Volume({ name: "pip-cache", mountPath: "/root/.cache/pip" });
 * const sb = await new Sandbox({ volumes: [cache] }).create();
 * // in a handler that mounts `models`:
 * await models.reload();   // others' committed files appear under models.mountPath
 * await models.commit();   // this container's changes are visible to the next reload or container
 */
import { commitVolume, reloadVolume, type VolumeCommitResult, type VolumeReloadResult } from "./volume-sync.js";

export class Volume {
  readonly name: string;
  readonly mountPath: string;

  constructor(options: { name: string; mountPath: string }) {
    if (!/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/.test(options.name)) {
      throw new TypeError(`volume name ${JSON.stringify(options.name)}: use lowercase letters, digits, '.', '_' or '-' (1–63, starting and ending with a letter or digit)`);
    }
    if (!options.mountPath.startsWith("/")) throw new TypeError(`volume mountPath must be absolute, got ${JSON.stringify(options.mountPath)}`);
    this.name = options.name;
    this.mountPath = options.mountPath;
  }

  /** Inside a container that mounts this volume: publishes what it changed now, not only when it ends. */
  commit(): Promise<VolumeCommitResult> {
    return commitVolume(this.name);
  }

  /** Inside a container that mounts this volume: brings in what others committed since it mounted (or last reloaded). */
  reload(): Promise<VolumeReloadResult> {
    return reloadVolume(this.name, this.mountPath);
  }
}
