/**
 * Code bundles on the worker: fetched from the gateway by content hash on first use, checked
 * against that hash, unpacked once into `<dir>/<hash>` (atomically: a crash leaves no half-unpacked
 * dir), and mounted read-only into every container of the workloads that use them.
 */
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { request } from "undici";
import { API_PREFIX } from "@beta9/protocol";
import type { GatewayEndpoint } from "./gateway-http.js";
import { run } from "./images/exec.js";

export class CodeCache {
  private readonly inFlight = new Map<string, Promise<string>>();

  constructor(private readonly dir: string, private readonly gateway: GatewayEndpoint) {}

  /** Removes what an interrupted fetch or unpack left. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) if (name.includes(".tmp-")) await rm(join(this.dir, name), { recursive: true, force: true });
  }

  /** The unpacked bundle's directory. */
  get(hash: string): Promise<string> {
    if (!/^[a-f0-9]{64}$/.test(hash)) return Promise.reject(new Error(`${hash} is not a sha256`));
    const target = join(this.dir, hash);
    if (existsSync(target)) return Promise.resolve(target);
    let job = this.inFlight.get(hash);
    if (!job) {
      job = this.fetchAndUnpack(hash, target).finally(() => this.inFlight.delete(hash));
      this.inFlight.set(hash, job);
    }
    return job;
  }

  private async fetchAndUnpack(hash: string, target: string): Promise<string> {
    const tmp = `${target}.tmp-${process.pid}`;
    const archive = `${tmp}.tar`;
    try {
      const res = await request(`${this.gateway.url}${API_PREFIX}/worker/object/${hash}`, { headers: { authorization: `Bearer ${this.gateway.token}` } });
      if (res.statusCode !== 200) throw new Error(`fetching code bundle ${hash}: the gateway answered ${res.statusCode}: ${(await res.body.text()).slice(0, 300)}`);
      const digest = createHash("sha256");
      await pipeline(res.body, new Transform({ transform(c: Buffer, _e, cb) { digest.update(c); cb(null, c); } }), createWriteStream(archive));
      const actual = digest.digest("hex");
      if (actual !== hash) throw new Error(`code bundle ${hash}: received bytes hash to ${actual}`);
      await mkdir(tmp);
      // The gateway checked the archive on upload (relative paths, no escaping links, no devices).
      await run(["tar", "-xf", archive, "-C", tmp, "--no-same-owner", "--no-same-permissions"]);
      await rename(tmp, target);
      return target;
    } finally {
      await rm(archive, { force: true });
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
