/**
 * An image with python3 and no busybox, for tests that need a real server in a registry image
 * (pods): the default base image's rootfs (debootstrap minbase + python3, from the base cache,
 * built there once when missing) as one plain-tar layer without docs and apt state, plus a layer
 * with the given files, and a config that names a CMD and WORKDIR as registry images do.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ensureBaseImage } from "./base.js";
import { sha256File } from "./digest.js";
import { run } from "../exec.js";
import { hostPlatform, MediaType } from "./oci.js";
import type { PushImage } from "./registry.js";
import { makeTar, type TarSpec } from "./testing.js";

// Device nodes (debootstrap makes /dev/console and friends) are refused in layers; the runtime mounts its own /dev.
const LEAVE_OUT = ["./dev/*", "./proc/*", "./sys/*", "./run/*", "./usr/share/doc", "./usr/share/man", "./usr/share/info", "./usr/share/locale", "./var/cache", "./var/lib/apt", "./var/log"];

export interface PythonImageOptions {
  /** The base cache dir (as the worker's `base-images`): reused when it holds the base already. */
  baseCacheDir: string;
  /** Files of the top layer, e.g. `{ name: "srv/server.py", content }`. */
  files: TarSpec[];
  cmd?: string[];
  workdir?: string;
  env?: string[];
}

export async function buildPythonImage(dir: string, tag: string, o: PythonImageOptions): Promise<PushImage> {
  const base = await ensureBaseImage({ cacheDir: o.baseCacheDir });
  const baseTar = join(dir, `python-base-${tag}.tar`);
  await run("tar", ["--numeric-owner", "--sort=name", ...LEAVE_OUT.map((p) => `--exclude=${p}`), "-cf", baseTar, "-C", base.rootfs, "."]);
  const top = makeTar(o.files);
  const topPath = join(dir, `python-top-${tag}.tar`);
  await writeFile(topPath, top);
  const config = Buffer.from(JSON.stringify({
    ...hostPlatform(),
    config: {
      Env: o.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      ...(o.cmd && { Cmd: o.cmd }), ...(o.workdir && { WorkingDir: o.workdir }),
    },
    rootfs: { type: "layers", diff_ids: [await sha256File(baseTar), await sha256File(topPath)] },
  }));
  return { config, layers: [{ path: baseTar, mediaType: MediaType.ociLayerTar }, { path: topPath, mediaType: MediaType.ociLayerTar }] };
}
