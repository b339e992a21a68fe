/**
 * `Volume`: a named file tree of the workspace, mounted read-write where you say in sandboxes and
 * workloads on any worker. A container sees the volume as it was when it started; what it changes
 * is committed to the gateway when it ends (per file, last writer wins), and containers that start
 * afterwards see it. Manage files from outside with `client.volumes` or `beta9 cp`.
 *
 * @example
 * const cache = new Volume({ name: "pip-cache", mountPath: "/root/.cache/pip" });
 * const sb = await new Sandbox({ volumes: [cache] }).create();
 */
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
}
