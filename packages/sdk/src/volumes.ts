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
import { createWriteStream } from "node:fs";
import { chmod, mkdir, rename, rm, stat, symlink, utimes } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { volumeNameProblem, volumePath, VolumePathError, type VolumeChange, type VolumeEntry, type VolumeInfo } from "@beta9/protocol";
import { ApiError, type Client } from "./client.js";
import { SandboxHttp } from "./sandbox-http.js";
import { CHUNKED_FROM, localTree, sha256Of, uploadChunked, uploadWhole, type LocalEntry, type UploadedFile } from "./volume-transfer.js";

export type { UploadedFile } from "./volume-transfer.js";

export interface TransferProgress {
  /** The file being moved now (volume path). */
  path: string;
  /** Bytes of all files moved so far, and in total. */
  done: number;
  total: number;
}

export interface TransferOptions {
  onProgress?: (progress: TransferProgress) => void;
  /** Each file once it is through (`sent` 0: the volume had it already; version -1: nothing was committed for it). */
  onFile?: (file: UploadedFile) => void;
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
   * the root, ends in '/' or is a directory of the volume, else to that very path. Inside a
   * directory, symlinks go as links (their text, never followed) and empty directories as
   * entries of their own; a link named as `localPath` itself is followed, as `cp -H` does. Large files go
   * in chunks and resume: run the same upload again after a break and only what never arrived is
   * sent (volume-transfer.ts); a file the volume holds already (same path, size and sha256) is skipped.
   */
  async upload(name: string, localPath: string, remotePath: string, options: TransferOptions = {}): Promise<UploadedFile[]> {
    checkName(name);
    const local = await stat(localPath).catch(() => undefined);
    if (!local) throw new TypeError(`${localPath}: no such file or directory`);
    const target = checkPath(remotePath, true);
    const into = target === "" || remotePath.endsWith("/") || (await this.isDir(name, target));
    const dest = into ? join2(target, basename(localPath)) : target;
    if (dest === "") throw new TypeError("upload a directory into the volume's root by naming it: VOLUME:dirname");
    const tree: LocalEntry[] = local.isDirectory()
      ? [{ kind: "dir", local: localPath, rel: "", stats: local }, ...(await localTree(localPath))]
      : [{ kind: "file", local: localPath, rel: "", stats: local }];
    const at = (rel: string) => (rel === "" ? dest : join2(dest, rel));
    // What the volume has there already: files that match are not sent again (a resumed copy).
    const remote = new Map((await this.ls(name, dest, { recursive: true }).catch(() => [] as VolumeEntry[])).map((e) => [e.path, e]));
    const total = tree.reduce((sum, e) => sum + (e.kind === "file" ? e.stats.size : 0), 0);
    let done = 0;
    const out: UploadedFile[] = [];
    const http = SandboxHttp.from(this.client);
    const commit = async (changes: VolumeChange[]) => {
      for (let i = 0; i < changes.length; i += 5_000) await http.json("POST", `${vol(name)}/changes`, { json: { changes: changes.slice(i, i + 5_000) } });
    };
    try {
      // Empty directories only: one with entries exists through them.
      const empty = (rel: string) => !tree.some((o) => o.rel !== rel && (rel === "" || o.rel.startsWith(`${rel}/`)));
      await commit(tree.flatMap((e): VolumeChange[] => (e.kind === "dir" && empty(e.rel) ? [{ path: at(e.rel), dir: true, mode: e.stats.mode & 0o777, mtime: Math.floor(e.stats.mtimeMs) }] : [])));
      for (const file of tree) {
        if (file.kind !== "file") continue;
        const path = at(file.rel);
        const have = remote.get(path);
        if (have?.type === "file" && have.size === file.stats.size && have.sha256 === (await sha256Of(file.local))) {
          done += file.stats.size;
          options.onProgress?.({ path, done, total });
          const skipped = { path, sha256: have.sha256, size: have.size, version: -1, sent: 0 };
          options.onFile?.(skipped);
          out.push(skipped);
          continue;
        }
        const upload = {
          http, volumeUrl: vol(name), local: file.local, path, stats: file.stats,
          onBytes: (n: number) => {
            done += n;
            options.onProgress?.({ path, done, total });
          },
        };
        const uploaded = file.stats.size >= CHUNKED_FROM ? await uploadChunked(upload) : await uploadWhole(upload);
        options.onFile?.(uploaded);
        out.push(uploaded);
      }
      await commit(tree.flatMap((e): VolumeChange[] => (e.kind === "link" ? [{ path: at(e.rel), link: e.target, mtime: Math.floor(e.stats.mtimeMs) }] : [])));
    } finally {
      await http.close();
    }
    return out;
  }

  /**
   * Downloads a file or a directory (recursively), as `cp` does: into `localPath` when that is an
   * existing directory, else to that very path. Each file is checked against its sha256 and
   * written whole (to a temp name, then renamed) or not at all; mode and mtime are kept. Symlinks
   * come back as links with their text (made last, so nothing is ever written through one), and
   * empty directories as directories.
   */
  async download(name: string, remotePath: string, localPath: string, options: TransferOptions = {}): Promise<VolumeEntry[]> {
    checkName(name);
    const source = checkPath(remotePath, true);
    const entries = await this.ls(name, source, { recursive: true });
    const single = entries.length === 1 && entries[0]!.path === source && source !== "" && entries[0]!.type !== "dir";
    const localDir = (await stat(localPath).catch(() => undefined))?.isDirectory() === true;
    const root = localDir ? join(localPath, source === "" ? "" : basename(source)) : localPath;
    const destOf = (entry: VolumeEntry) => (single ? root : join(root, source === "" ? entry.path : entry.path.slice(source.length + 1)));
    const total = entries.reduce((sum, e) => sum + (e.type === "file" ? e.size : 0), 0);
    let done = 0;
    if (!single) await mkdir(root, { recursive: true });
    const dirs = entries.filter((e) => e.type === "dir");
    for (const dir of dirs) await mkdir(destOf(dir), { recursive: true });
    const http = SandboxHttp.from(this.client);
    try {
      for (const entry of entries) {
        if (entry.type !== "file") continue;
        const dest = destOf(entry);
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
          options.onFile?.({ path: entry.path, sha256: expected, size: entry.size, version: -1 });
        } catch (err) {
          await rm(part, { force: true });
          throw err;
        }
      }
    } finally {
      await http.close();
    }
    for (const entry of entries) {
      if (entry.type !== "link" || entry.target === undefined) continue;
      const dest = destOf(entry);
      await mkdir(dirname(dest), { recursive: true });
      const tmp = join(dirname(dest), `.${basename(dest)}.${process.pid}.link`);
      await rm(tmp, { force: true });
      await symlink(entry.target, tmp);
      await rename(tmp, dest);
    }
    // Modes last, deepest first: a read-only directory would refuse what goes in it.
    for (const dir of dirs.sort((a, b) => (a.path < b.path ? 1 : -1))) {
      if (dir.mode !== undefined) await chmod(destOf(dir), dir.mode);
    }
    return entries;
  }

  private async isDir(name: string, path: string): Promise<boolean> {
    try {
      const entries = await this.ls(name, path);
      return !(entries.length === 1 && entries[0]!.path === path && entries[0]!.type !== "dir");
    } catch (err) {
      if (err instanceof ApiError && err.code === "VOLUME_PATH_NOT_FOUND") return false;
      throw err;
    }
  }
}
