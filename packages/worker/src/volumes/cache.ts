/**
 * Volume snapshots on a worker: one read-only directory per volume version it has mounted,
 * `<dir>/<workspace>/<name>/<volumeId>-v<version>/` beside its manifest (`….json`). Containers get
 * it as the lower layer of an overlay (mounts.ts), so any number of containers share one copy and
 * a second container on this worker copies nothing from the gateway again. A newer version is
 * built from the previous snapshot: unchanged files are hard links (snapshots are never written:
 * overlayfs copies a file up before changing it), only new contents are downloaded, each checked
 * against its hash, and the directory is renamed into place whole.
 *
 * A snapshot stays while a container uses it; the newest of each volume stays for the next one.
 */
import { randomUUID } from "node:crypto";
import { constants, existsSync, readFileSync } from "node:fs";
import { chmod, chown, copyFile, lchown, link, lutimes, mkdir, open, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isDirEntry, isFileEntry, linkOf, linkTargetProblem, volumePath, type ManifestEntry } from "@beta9/protocol";
import type { GatewayEndpoint } from "../gateway-http.js";
import { downloadBlob, mountVolume } from "./gateway.js";

export interface Snapshot {
  workspaceId: string;
  name: string;
  volumeId: string;
  version: number;
  /** The read-only directory to use as a lower layer. */
  dir: string;
  files: Record<string, ManifestEntry>;
}

const SNAPSHOT = /^([A-Za-z0-9-]+)-v([0-9]+)$/;
const DOWNLOADS_AT_ONCE = 4;

export class VolumeCache {
  private readonly users = new Map<string, number>();
  private readonly building = new Map<string, Promise<Snapshot>>();

  /** `owner`: the host uid that is root in containers (user namespaces); a snapshot's files are its, as they would be a container root's. */
  constructor(
    readonly dir: string,
    private readonly gateway: GatewayEndpoint,
    private readonly owner: () => number | undefined = () => undefined,
    /** Which boot of the host this is (snapshots built in another are dropped by init). */
    private readonly boot: () => string = hostBootId,
  ) {}

  /**
   * Removes half-built snapshots a crash left, and every snapshot when the host has restarted since
   * they were built: their files are not fsynced (a snapshot renamed into place is whole for as long
   * as the page cache holds it, which a worker's own crash does not end), so after a host crash the
   * disk may hold torn files. The boot marker is synced before any snapshot is built.
   */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const marker = join(this.dir, ".boot-id");
    const boot = this.boot();
    const built = await readFile(marker, "utf8").catch(() => undefined);
    const stale = built !== undefined && built !== boot;
    for (const ws of await readdir(this.dir)) {
      for (const name of await readdir(join(this.dir, ws)).catch(() => [] as string[])) {
        for (const entry of await readdir(join(this.dir, ws, name)).catch(() => [] as string[])) {
          if (stale || entry.startsWith(".tmp-")) await rm(join(this.dir, ws, name, entry), { recursive: true, force: true });
        }
      }
    }
    if (built !== boot) {
      const handle = await open(marker, "w", 0o600);
      try {
        await handle.writeFile(boot);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }

  /** The volume's current version as a local snapshot, held until `release`. */
  async acquire(workspaceId: string, name: string): Promise<Snapshot> {
    const volumeDir = join(this.dir, workspaceId, name);
    const newest = await this.newest(volumeDir);
    const answer = await mountVolume(this.gateway, workspaceId, name, newest && { id: newest.volumeId, version: newest.version });
    const key = join(volumeDir, `${answer.id}-v${answer.version}`);
    // Held from here, so that no prune can remove it between its build and this container's mount.
    this.users.set(key, (this.users.get(key) ?? 0) + 1);
    let job = this.building.get(key);
    if (!job) {
      job = (async (): Promise<Snapshot> => {
        const snapshot = { workspaceId, name, volumeId: answer.id, version: answer.version, dir: key };
        if (existsSync(key)) return { ...snapshot, files: answer.files ?? await readManifest(key) };
        if (!answer.files) throw new Error(`volume ${name}: the gateway sent no manifest for version ${answer.version}, which this worker does not have`);
        await this.build(snapshot.dir, answer.files, workspaceId, newest);
        return { ...snapshot, files: answer.files };
      })().finally(() => this.building.delete(key));
      this.building.set(key, job);
    }
    try {
      return await job;
    } catch (err) {
      await this.release({ dir: key });
      throw err;
    }
  }

  /** A snapshot's manifest and directory by version, if this worker still has it (recovery after a crash). */
  async local(workspaceId: string, name: string, volumeId: string, version: number): Promise<Snapshot | undefined> {
    const dir = join(this.dir, workspaceId, name, `${volumeId}-v${version}`);
    if (!existsSync(dir)) return undefined;
    this.users.set(dir, (this.users.get(dir) ?? 0) + 1);
    return { workspaceId, name, volumeId, version, dir, files: await readManifest(dir) };
  }

  /** Done with it; older unused snapshots of the volume go. */
  async release(snapshot: Pick<Snapshot, "dir">): Promise<void> {
    const left = (this.users.get(snapshot.dir) ?? 1) - 1;
    if (left > 0) this.users.set(snapshot.dir, left);
    else this.users.delete(snapshot.dir);
    await this.prune(dirname(snapshot.dir));
  }

  /** Removes every snapshot of the volume but the newest, unless a container holds it. */
  async prune(volumeDir: string): Promise<void> {
    const newest = await this.newest(volumeDir);
    for (const entry of await readdir(volumeDir).catch(() => [] as string[])) {
      const match = SNAPSHOT.exec(entry);
      const dir = join(volumeDir, entry);
      if (!match || dir === newest?.dir || this.users.has(dir) || this.building.has(dir)) continue;
      await rm(`${dir}.json`, { force: true });
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async newest(volumeDir: string): Promise<{ volumeId: string; version: number; dir: string } | undefined> {
    let best: { volumeId: string; version: number; dir: string; at: number } | undefined;
    for (const entry of await readdir(volumeDir, { withFileTypes: true }).catch(() => [])) {
      const match = SNAPSHOT.exec(entry.name);
      if (!match || !entry.isDirectory()) continue;
      // The one built last (versions only order one volume id; a volume deleted and created again starts over).
      const at = (await stat(`${join(volumeDir, entry.name)}.json`).catch(() => undefined))?.mtimeMs ?? 0;
      if (!best || at > best.at) best = { volumeId: match[1]!, version: Number(match[2]), dir: join(volumeDir, entry.name), at };
    }
    return best && { volumeId: best.volumeId, version: best.version, dir: best.dir };
  }

  private async build(target: string, files: Record<string, ManifestEntry>, workspaceId: string, previous: { dir: string } | undefined): Promise<void> {
    const tmp = join(dirname(target), `.tmp-${randomUUID()}`);
    // Local copies by hash: the previous snapshot's files (same volume), then what this build placed.
    const local = new Map<string, { path: string; mode: number; mtime: number }>();
    if (previous) {
      for (const [path, entry] of Object.entries(await readManifest(previous.dir).catch(() => ({})))) {
        if (isFileEntry(entry)) local.set(entry[0], { path: join(previous.dir, path), mode: entry[2], mtime: entry[3] });
      }
    }
    const byHash = new Map<string, [string, ManifestEntry][]>();
    const links: [string, string, number][] = [];
    const dirs: [string, ManifestEntry][] = [];
    const leaves = new Set(Object.entries(files).filter(([, entry]) => !isDirEntry(entry)).map(([path]) => path));
    for (const [raw, entry] of Object.entries(files)) {
      // The gateway checked these; a worker does not rely on it when it writes files as root. No
      // entry may lie below a file or a link: links are made last, so nothing is written through one.
      if (volumePath(raw) !== raw) throw new Error(`volume manifest path ${JSON.stringify(raw)} is not canonical`);
      for (let i = raw.indexOf("/"); i !== -1; i = raw.indexOf("/", i + 1)) {
        if (leaves.has(raw.slice(0, i))) throw new Error(`volume manifest path ${JSON.stringify(raw)} lies below a file or a link`);
      }
      const target = linkOf(entry);
      if (target !== undefined) {
        if (linkTargetProblem(target)) throw new Error(`volume manifest link ${JSON.stringify(raw)}: ${linkTargetProblem(target)}`);
        links.push([raw, target, entry[3]]);
      } else if (isDirEntry(entry)) dirs.push([raw, entry]);
      else byHash.set(entry[0], [...(byHash.get(entry[0]) ?? []), [raw, entry]]);
    }
    try {
      await mkdir(tmp, { recursive: true, mode: 0o755 });
      for (const [path] of dirs) await mkdir(join(tmp, path), { recursive: true, mode: 0o755 });
      const groups = [...byHash.entries()];
      const work = async (): Promise<void> => {
        for (let group = groups.shift(); group; group = groups.shift()) {
          const [hash, paths] = group;
          let source = local.get(hash);
          for (const [path, [, size, mode, mtime]] of paths) {
            const dest = join(tmp, path);
            await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
            if (source && source.mode === mode && source.mtime === mtime) {
              await link(source.path, dest);
              continue;
            }
            if (source) await copyFile(source.path, dest, constants.COPYFILE_FICLONE);
            else await downloadBlob(this.gateway, workspaceId, hash, size, dest);
            await chmod(dest, mode);
            await utimes(dest, mtime / 1000, mtime / 1000);
            source = { path: dest, mode, mtime };
          }
        }
      };
      await Promise.all(Array.from({ length: DOWNLOADS_AT_ONCE }, work));
      for (const [path, target, mtime] of links) {
        await mkdir(dirname(join(tmp, path)), { recursive: true, mode: 0o755 });
        await symlink(target, join(tmp, path));
        await lutimes(join(tmp, path), mtime / 1000, mtime / 1000);
      }
      // Modes and times last (deepest first): placing entries below would change them.
      for (const [path, [, , mode, mtime]] of dirs.sort((a, b) => (a[0] < b[0] ? 1 : -1))) {
        await chmod(join(tmp, path), mode);
        await utimes(join(tmp, path), mtime / 1000, mtime / 1000);
      }
      const owner = this.owner();
      if (owner !== undefined) await chownTree(tmp, owner);
      await writeFile(`${target}.json`, JSON.stringify(files));
      await rename(tmp, target);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}

function hostBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown"; // no procfs (not Linux as we run it): every start counts as the same boot
  }
}

async function readManifest(dir: string): Promise<Record<string, ManifestEntry>> {
  return JSON.parse(await readFile(`${dir}.json`, "utf8")) as Record<string, ManifestEntry>;
}

/** Gives `dir` and everything below it to `owner` (files hard-linked from an earlier snapshot are its already). */
async function chownTree(dir: string, owner: number): Promise<void> {
  await chown(dir, owner, owner);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, owner);
    else if (entry.isSymbolicLink()) await lchown(path, owner, owner); // the link itself: chown would follow it
    else await chown(path, owner, owner);
  }
}
