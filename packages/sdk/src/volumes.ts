/**
 * `client.volumes`: the workspace's volumes from outside any container: create, list, delete,
 * `ls`, and files in and out, streamed both ways (never held in memory whole), directories
 * recursively. Each uploaded file is one commit: containers that start afterwards, on any worker,
 * see it. Containers see a volume by mounting it (`volumes: [new Volume({ name, mountPath })]`).
 *
 * @example
 * await client.volumes.create("models");
 * await client.volumes.upload("models", "./weights", "weights");        // a file or a directory
 * for (const e of await client.volumes.ls("models", "weights")) console.log(e.path, e.size);
 * await client.volumes.download("models", "weights/a.bin", "./a.bin");   // checked against its sha256
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, type Stats } from "node:fs";
import { chmod, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { volumeNameProblem, volumePath, VolumePathError, type VolumeEntry, type VolumeInfo } from "@beta9/protocol";
import { ApiError, type Client } from "./client.js";
import { SandboxHttp } from "./sandbox-http.js";

export interface TransferProgress {
  /** The file being moved now (volume path). */
  path: string;
  /** Bytes of all files moved so far, and in total. */
  done: number;
  total: number;
}

export interface TransferOptions {
  onProgress?: (progress: TransferProgress) => void;
}

export interface UploadedFile {
  path: string;
  sha256: string;
  size: number;
  /** The volume's version after this file's commit. */
  version: number;
}

function checkName(name: string): string {
  const problem = volumeNameProblem(name);
  if (problem) throw new TypeError(problem);
  return name;
}

/** The canonical volume path, or a TypeError naming the problem (the gateway would answer 422). */
function checkPath(raw: string, allowRoot: boolean): string {
  try {
    return volumePath(raw, allowRoot);
  } catch (err) {
    if (err instanceof VolumePathError) throw new TypeError(`volume path ${err.message}`);
    throw err;
  }
}

const join2 = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);
const vol = (name: string) => `/volume/${encodeURIComponent(name)}`;

export class Volumes {
  constructor(private readonly client: Client) {}

  create(name: string): Promise<VolumeInfo> {
    return this.client.request("POST", "/volume", { body: { name: checkName(name) } });
  }
  async list(): Promise<VolumeInfo[]> {
    return (await this.client.request<{ items: VolumeInfo[] }>("GET", "/volume")).items;
  }
  get(name: string): Promise<VolumeInfo> {
    return this.client.request("GET", vol(checkName(name)));
  }
  /** Deletes the volume and its files; containers that still mount it keep their view, and their commits are refused. */
  delete(name: string): Promise<VolumeInfo> {
    return this.client.request("DELETE", vol(checkName(name)));
  }

  /** A directory's children (or, with `recursive`, every file below it), or the file at `path`. */
  async ls(name: string, path = "", options: { recursive?: boolean } = {}): Promise<VolumeEntry[]> {
    const query = { path: checkPath(path, true), ...(options.recursive && { recursive: "true" }) };
    return (await this.client.request<{ items: VolumeEntry[] }>("GET", `${vol(checkName(name))}/ls`, { query })).items;
  }

  /** Removes a file, or with `recursive` a directory and everything below it (`""`: everything). */
  async remove(name: string, path: string, options: { recursive?: boolean } = {}): Promise<{ removed: number; version: number }> {
    const query = { path: checkPath(path, options.recursive === true) || ".", ...(options.recursive && { recursive: "true" }) };
    return this.client.request("DELETE", `${vol(checkName(name))}/file`, { query });
  }

  /**
   * Uploads a local file or directory (recursively), as `cp` does: into `remotePath` when that is
   * the root, ends in '/' or is a directory of the volume, else to that very path.
   */
  async upload(name: string, localPath: string, remotePath: string, options: TransferOptions = {}): Promise<UploadedFile[]> {
    checkName(name);
    const local = await stat(localPath).catch(() => undefined);
    if (!local) throw new TypeError(`${localPath}: no such file or directory`);
    const target = checkPath(remotePath, true);
    const into = target === "" || remotePath.endsWith("/") || (await this.isDir(name, target));
    const dest = into ? join2(target, basename(localPath)) : target;
    const files = local.isDirectory() ? await localFiles(localPath) : [{ local: localPath, rel: "", stats: local }];
    const total = files.reduce((sum, f) => sum + f.stats.size, 0);
    let done = 0;
    const out: UploadedFile[] = [];
    const http = SandboxHttp.from(this.client);
    try {
      for (const file of files) {
        const path = file.rel === "" ? dest : join2(dest, file.rel);
        if (path === "") throw new TypeError("upload a directory into the volume's root by naming it: VOLUME:dirname");
        const meter = new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            done += chunk.length;
            options.onProgress?.({ path, done, total });
            cb(null, chunk);
          },
        });
        const query = { path, mode: (file.stats.mode & 0o777).toString(8).padStart(3, "0"), mtime: String(Math.floor(file.stats.mtimeMs)) };
        out.push(await http.json<UploadedFile>("PUT", `${vol(name)}/file`, {
          body: createReadStream(file.local, { highWaterMark: 1 << 20 }).pipe(meter), contentLength: file.stats.size, query,
        }));
      }
    } finally {
      await http.close();
    }
    return out;
  }

  /**
   * Downloads a file or a directory (recursively), as `cp` does: into `localPath` when that is an
   * existing directory, else to that very path. Each file is checked against its sha256 and
   * written whole (to a temp name, then renamed) or not at all; mode and mtime are kept.
   */
  async download(name: string, remotePath: string, localPath: string, options: TransferOptions = {}): Promise<VolumeEntry[]> {
    checkName(name);
    const source = checkPath(remotePath, true);
    const entries = await this.ls(name, source, { recursive: true });
    const single = entries.length === 1 && entries[0]!.path === source && source !== "";
    const localDir = (await stat(localPath).catch(() => undefined))?.isDirectory() === true;
    const root = localDir ? join(localPath, source === "" ? "" : basename(source)) : localPath;
    const total = entries.reduce((sum, e) => sum + e.size, 0);
    let done = 0;
    const http = SandboxHttp.from(this.client);
    try {
      for (const entry of entries) {
        const dest = single ? root : join(root, source === "" ? entry.path : entry.path.slice(source.length + 1));
        await mkdir(dirname(dest), { recursive: true });
        const part = join(dirname(dest), `.${basename(dest)}.${process.pid}.part`);
        const res = await http.raw("GET", `${vol(name)}/file`, { query: { path: entry.path } });
        const expected = String(res.headers["x-beta9-sha256"] ?? "");
        const digest = createHash("sha256");
        const meter = new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            digest.update(chunk);
            done += chunk.length;
            options.onProgress?.({ path: entry.path, done, total });
            cb(null, chunk);
          },
        });
        try {
          await pipeline(res.body, meter, createWriteStream(part));
          const actual = digest.digest("hex");
          if (actual !== expected) throw new ApiError(0, "HASH_MISMATCH", `${name}:${entry.path}: received bytes hash to ${actual}, the gateway said ${expected}`);
          const mode = parseInt(String(res.headers["x-beta9-mode"] ?? "644"), 8);
          const mtime = Number(res.headers["x-beta9-mtime"] ?? Date.now()) / 1000;
          await chmod(part, mode);
          await utimes(part, mtime, mtime);
          await rename(part, dest);
        } catch (err) {
          await rm(part, { force: true });
          throw err;
        }
      }
    } finally {
      await http.close();
    }
    return entries;
  }

  private async isDir(name: string, path: string): Promise<boolean> {
    try {
      const entries = await this.ls(name, path);
      return !(entries.length === 1 && entries[0]!.path === path && entries[0]!.type === "file");
    } catch (err) {
      if (err instanceof ApiError && err.code === "VOLUME_PATH_NOT_FOUND") return false;
      throw err;
    }
  }
}

/** Regular files below `dir` (symlinks and other special files are not followed or sent). */
async function localFiles(dir: string): Promise<{ local: string; rel: string; stats: Stats }[]> {
  const out: { local: string; rel: string; stats: Stats }[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of (await readdir(at, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) out.push({ local: path, rel: relative(dir, path).split("\\").join("/"), stats: await stat(path) });
    }
  };
  await walk(dir);
  return out;
}
