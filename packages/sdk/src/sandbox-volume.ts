/**
 * `Volume`: a named directory of the workspace that outlives sandboxes, mounted read-write where
 * you say. Kept on the worker that ran the sandbox (not replicated across machines yet), so data
 * written by one sandbox is there for the next one on that worker.
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
