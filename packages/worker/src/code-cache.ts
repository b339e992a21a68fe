/**
 * Code bundles on the worker: fetched from the gateway by content hash on first use, checked
 * against that hash, unpacked once into `<dir>/<hash>` (atomically: a crash leaves no half-unpacked
 * dir), and mounted read-only into every container of the workloads that use them.
 *
 * A bundle is tenant input. The gateway checked it on upload, but the worker does not rely on that
 * (a bundle stored before a fix to that check is still served): it reads the headers itself with
 * the same strict reader and models every entry against the target before tar runs, then runs tar
 * confined to the target (as root; see images/confined-tar.ts) on exactly the checked bytes.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform, Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { request } from "undici";
import { API_PREFIX } from "@beta9/protocol";
import type { GatewayEndpoint } from "./gateway-http.js";
import { CONFINED_TARGET, startConfinedTar, TarCut } from "./images/confined-tar.js";
import { start } from "./exec.js";
import { LayerRefusedError, planLayer } from "./images/layer-policy.js";
import { TarFormatError, TarLister } from "./images/tar-list.js";

export class BundleRefusedError extends Error {
  override name = "BundleRefusedError";
}

/** The archive's bytes as a plain tar: bundles may be gzip-compressed. */
async function tarStreams(archive: string): Promise<Readable[]> {
  const handle = await open(archive, "r");
  const magic = Buffer.alloc(2);
  try {
    await handle.read(magic, 0, 2, 0);
  } finally {
    await handle.close();
  }
  const file = createReadStream(archive, { highWaterMark: 1 << 20 });
  return magic[0] === 0x1f && magic[1] === 0x8b ? [file, createGunzip({ chunkSize: 256 << 10 })] : [file];
}

/**
 * Checks `archive` entry by entry against the empty directory `dir`, then extracts it there.
 * Throws {@link BundleRefusedError} naming the entry and the reason.
 */
export async function unpackBundle(archive: string, dir: string): Promise<void> {
  const lister = new TarLister();
  try {
    await pipeline([...(await tarStreams(archive)), lister, new Writable({ write: (_c, _e, done) => done() })]);
    for (const entry of lister.entries) {
      if (entry.type === "fifo") throw new LayerRefusedError(entry.name, "is a FIFO; bundles hold files, directories and links");
    }
    planLayer(dir, lister.entries, { whiteouts: false });
  } catch (err) {
    if (err instanceof LayerRefusedError) throw new BundleRefusedError(`code bundle refused: entry ${JSON.stringify(err.entry)} ${err.reason}`);
    if (err instanceof TarFormatError) throw new BundleRefusedError(`code bundle refused: ${err.message}`);
    throw err;
  }
  const args = ["-x", "-f", "-", "--no-same-owner", "--no-same-permissions", "--warning=no-unknown-keyword", "--warning=no-timestamp"];
  // Without root there is no mount namespace to confine tar in; such a worker also runs the
  // bundle's code as unisolated processes of its own user, which can do no less than tar could.
  const tar = process.getuid?.() === 0 ? await startConfinedTar(dir, [...args, "-C", CONFINED_TARGET]) : start("tar", [...args, "-C", dir]);
  try {
    await Promise.all([pipeline([...(await tarStreams(archive)), new TarCut(lister.archiveEnd), tar.stdin]), tar.done]);
  } catch (err) {
    tar.kill();
    throw await tar.done.then(() => err, (tarErr: unknown) => tarErr);
  }
}

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
      const res = await request(`${this.gateway.url}${API_PREFIX}/worker/object/${hash}`, {
        headers: { authorization: `Bearer ${this.gateway.token}` }, ...(this.gateway.dispatcher && { dispatcher: this.gateway.dispatcher }),
      });
      if (res.statusCode !== 200) throw new Error(`fetching code bundle ${hash}: the gateway answered ${res.statusCode}: ${(await res.body.text()).slice(0, 300)}`);
      const digest = createHash("sha256");
      await pipeline(res.body, new Transform({ transform(c: Buffer, _e, cb) { digest.update(c); cb(null, c); } }), createWriteStream(archive));
      const actual = digest.digest("hex");
      if (actual !== hash) throw new Error(`code bundle ${hash}: received bytes hash to ${actual}`);
      await mkdir(tmp);
      await unpackBundle(archive, tmp);
      await rename(tmp, target);
      return target;
    } finally {
      await rm(archive, { force: true });
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
