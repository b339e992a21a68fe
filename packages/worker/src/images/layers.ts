/**
 * Applies image layers (tar, tar+gzip, tar+zstd) in order to a rootfs directory.
 *
 * How: the blob is decompressed (gzip in-process, zstd by the `zstd` binary) while
 * {@link TarLister} records its entries and the uncompressed bytes are hashed against the config's
 * diff_id. {@link planLayer} then checks every entry and works out the whiteouts; we delete what
 * they name ourselves, and GNU tar extracts the stream again with whiteout entries excluded,
 * keeping numeric owners, modes and file capabilities (security.capability only: trusted.*
 * xattrs would let a layer steer the overlayfs that uses the image). tar gets exactly the bytes
 * that were checked (up to the end marker the check stopped at) and runs confined to the rootfs
 * ({@link startConfinedTar}), so a name the check misread still cannot land outside it.
 * A refused layer changes nothing; a failure during extraction can leave the rootfs half-applied,
 * so build into a scratch directory and discard it on error.
 */
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { lstat, mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { DigestMismatchError, HashingCounter } from "./digest.js";
import { CONFINED_TARGET, startConfinedTar, TarCut } from "./confined-tar.js";
import { LayerRefusedError, planLayer, type LayerPlan } from "./layer-policy.js";
import { TarLister } from "./tar-list.js";

export { LayerRefusedError } from "./layer-policy.js";

export interface LayerSource {
  /** The layer blob on disk. */
  path: string;
  /** The magic bytes decide; a compressed media type on uncompressed bytes is an error. */
  mediaType?: string;
  /** sha256 of the uncompressed tar (config rootfs.diff_ids); checked when given. */
  diffId?: string;
}

export interface ApplyStats {
  layers: number;
  entries: number;
  compressedBytes: number;
  uncompressedBytes: number;
}

type Compression = "gzip" | "zstd" | "none";

async function detectCompression(path: string, mediaType = ""): Promise<Compression> {
  const handle = await open(path, "r");
  const magic = Buffer.alloc(4);
  try {
    await handle.read(magic, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) return "gzip";
  if (magic.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "zstd";
  if (mediaType.endsWith("+zstd")) throw new Error(`${path}: media type ${mediaType} says zstd, but the data is not zstd`);
  if (/gzip$/.test(mediaType)) throw new Error(`${path}: media type ${mediaType} says gzip, but the data is not gzip`);
  return "none";
}

interface Decompressor {
  /** Streams to put first in the pipeline; they yield the plain tar. */
  streams: Readable[];
  /** Settles when the helper process (zstd) has exited. */
  done: Promise<void>;
  kill(): void;
}

/** Decompresses a layer blob: gzip in-process (zlib), zstd via the zstd binary (Node 20 has none). */
function decompressor(path: string, compression: Compression): Decompressor {
  if (compression !== "zstd") {
    // Large chunks: zlib's default 16 KiB output chunks make gunzip about twice as slow.
    const streams: Readable[] = [createReadStream(path, { highWaterMark: 1 << 20 }), ...(compression === "gzip" ? [createGunzip({ chunkSize: 256 << 10 })] : [])];
    return { streams, done: Promise.resolve(), kill: () => {} };
  }
  const child = spawn("zstd", ["-dcq", "--", path], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const done = new Promise<void>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`zstd -d ${path} failed: ${stderr.trim() || `exit ${code}`}`))));
  });
  return { streams: [child.stdout], done, kill: () => child.kill("SIGKILL") };
}

/**
 * Refuses a removal whose parent directories are not all real directories on disk: the plan says
 * they are, and rm would follow a symlink there (nothing else writes the rootfs meanwhile).
 */
async function assertRealParents(root: string, path: string): Promise<void> {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const st = await lstat(join(root, ...parts.slice(0, i))).catch(() => undefined);
    if (st && !st.isDirectory()) throw new LayerRefusedError(path, `would be removed through ${parts.slice(0, i).join("/")}, which is not a directory`);
  }
}

/** Deletes what whiteouts and type changes require; paths are already resolved and checked. */
async function applyRemovals(root: string, plan: LayerPlan): Promise<void> {
  for (const dir of plan.emptied) {
    await assertRealParents(root, `${dir}/x`); // the dir itself too
    const abs = join(root, dir);
    const children = await readdir(abs).catch(() => [] as string[]);
    for (const child of children) await rm(join(abs, child), { recursive: true, force: true });
  }
  for (const path of plan.removals) {
    await assertRealParents(root, path);
    await rm(join(root, path), { recursive: true, force: true });
  }
}

const TAR_EXTRACT = ["-x", "-f", "-", "--numeric-owner", "--same-owner", "-p", "--xattrs",
  "--xattrs-include=security.capability", "--exclude=.wh.*", "--warning=no-unknown-keyword", "--warning=no-timestamp"];

/** Decompresses the layer through `sinks`; returns the uncompressed digest and size. */
async function streamLayer(path: string, compression: Compression, sinks: Writable[], extra: Promise<void> = Promise.resolve()): Promise<HashingCounter> {
  const counter = new HashingCounter();
  const source = decompressor(path, compression);
  try {
    await Promise.all([pipeline([...source.streams, counter, ...sinks]), source.done, extra]);
  } catch (err) {
    source.kill(); // a refused or corrupt layer must not leave zstd blocked on a full pipe
    throw err;
  }
  return counter;
}

/**
 * Applies one layer on top of what is in `root`. The blob is decompressed twice, once to list and
 * check it and once into tar: cheaper than a temp copy of the whole tar on a slow disk, and the
 * second pass is hashed too, so tar provably got the bytes that were checked.
 */
export async function applyLayer(root: string, layer: LayerSource): Promise<ApplyStats> {
  const compression = await detectCompression(layer.path, layer.mediaType);
  await mkdir(root, { recursive: true });
  const lister = new TarLister();
  const checked = await streamLayer(layer.path, compression, [lister, new Writable({ write: (_c, _e, done) => done() })]);
  const diffId = checked.digest();
  if (layer.diffId && layer.diffId !== diffId) throw new DigestMismatchError(`uncompressed layer ${layer.path}`, layer.diffId, diffId);
  const plan = planLayer(root, lister.entries);
  await applyRemovals(root, plan);
  const tar = await startConfinedTar(root, [...TAR_EXTRACT, "-C", CONFINED_TARGET]);
  let extracted: HashingCounter;
  try {
    extracted = await streamLayer(layer.path, compression, [new TarCut(lister.archiveEnd), tar.stdin], tar.done);
  } catch (err) {
    tar.kill();
    // tar's own complaint says more than the EPIPE its early exit causes upstream.
    throw await tar.done.then(() => err, (tarErr: unknown) => tarErr);
  }
  if (extracted.digest() !== diffId) throw new DigestMismatchError(`layer ${layer.path} (changed while applied)`, diffId, extracted.digest());
  return { layers: 1, entries: plan.entries, compressedBytes: (await stat(layer.path)).size, uncompressedBytes: checked.bytes };
}

/** Applies layers lowest first into `root` (created if missing). */
export async function applyLayers(root: string, layers: LayerSource[]): Promise<ApplyStats> {
  await mkdir(root, { recursive: true });
  const total: ApplyStats = { layers: 0, entries: 0, compressedBytes: 0, uncompressedBytes: 0 };
  for (const layer of layers) {
    const stats = await applyLayer(root, layer);
    total.layers += 1;
    total.entries += stats.entries;
    total.compressedBytes += stats.compressedBytes;
    total.uncompressedBytes += stats.uncompressedBytes;
  }
  return total;
}
