/**
 * Build work that runs no container: copying uploaded files into the image (copy steps: COPY,
 * ADD, addLocalFile/Dir) and looking up USER and --chown names in the image's /etc/passwd and
 * /etc/group. Both work on an overlay of the build's layers mounted on the worker, with the new
 * layer as its upper dir: the view a build container has, whatever the layers' whiteouts say.
 *
 * The image is tenant data. Paths inside it are resolved by {@link resolveInRoot}, which follows
 * the image's symlinks the way the container would (absolute ones from the image root, `..`
 * stopping there), so no link can point the worker outside the image; the files are then written
 * by the confined tar (confined-tar.ts), which could not leave the target directory anyway.
 */
import { randomBytes } from "node:crypto";
import { copyFile, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm } from "node:fs/promises";
import { basename, dirname, join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { spawn } from "node:child_process";
import type { ImageStep } from "@beta9/protocol";
import { CommandError, notStarted, run } from "../exec.js";
import { CONFINED_TARGET, startConfinedTar } from "./confined-tar.js";

export class BuildFsError extends Error {
  override name = "BuildFsError";
}

/** Mounts an overlay of `layers` (lowest first) with `upper` as its writable layer; unmounts after `fn`. */
export async function withOverlay<T>(scratch: string, layers: string[], upper: string, fn: (root: string) => Promise<T>): Promise<T> {
  const id = randomBytes(4).toString("hex");
  const root = join(scratch, `overlay-${id}`);
  const work = join(scratch, `overlay-work-${id}`);
  await Promise.all([mkdir(root, { recursive: true }), mkdir(work, { recursive: true }), mkdir(upper, { recursive: true })]);
  try {
    await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${[...layers].reverse().join(":")},upperdir=${upper},workdir=${work},nosuid,nodev`, root]);
    try {
      return await fn(root);
    } finally {
      await run("umount", [root]);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The host path of `path` inside the image at `root`, every symlink resolved within the image.
 * With `create`, missing directories are made (root-owned, 0755) along the way; without it a
 * missing path resolves to where it would be, with `exists: false`.
 */
export async function resolveInRoot(root: string, path: string, create = false): Promise<{ host: string; exists: boolean }> {
  const pending = path.split("/").filter(Boolean);
  let resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    const st = await lstat(host).catch(() => undefined);
    if (!st) {
      if (!create) return { host: join(root, ...resolved, part, ...pending), exists: false };
      await mkdir(host, { mode: 0o755 });
      resolved.push(part);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) throw new BuildFsError(`${path}: too many levels of symbolic links in the image`);
      const target = await readlink(host);
      if (target.startsWith("/")) resolved = [];
      pending.unshift(...target.split("/").filter(Boolean));
      continue;
    }
    if (!st.isDirectory() && pending.length > 0) throw new BuildFsError(`${path}: /${[...resolved, part].join("/")} is not a directory in the image`);
    resolved.push(part);
  }
  return { host: join(root, ...resolved), exists: true };
}

/** A small regular file of the image (e.g. /etc/passwd), or undefined. */
async function readImageFile(root: string, path: string): Promise<string | undefined> {
  const { host, exists } = await resolveInRoot(root, path);
  if (!exists) return undefined;
  const st = await lstat(host);
  if (!st.isFile() || st.size > 4 * 1024 * 1024) return undefined;
  return readFile(host, "utf8");
}

export interface ImageUser {
  uid: number;
  gid: number;
  /** From /etc/passwd, when the user is listed there. */
  home?: string;
}

/** `user[:group]` (names or ids) as numbers, looked up in the image like `docker run --user` does. */
export async function lookupUser(root: string, spec: string): Promise<ImageUser> {
  const [user, group] = spec.split(":") as [string, string | undefined];
  const numeric = /^\d+$/;
  const passwd = (await readImageFile(root, "/etc/passwd"))?.split("\n").map((l) => l.split(":")) ?? [];
  const entry = passwd.find((f) => f.length >= 4 && (numeric.test(user) ? f[2] === user : f[0] === user));
  if (!entry && !numeric.test(user)) throw new BuildFsError(`user ${user} is not in the image's /etc/passwd`);
  const uid = Number(entry ? entry[2] : user);
  let gid = entry ? Number(entry[3]) : 0;
  if (group !== undefined) {
    if (numeric.test(group)) gid = Number(group);
    else {
      const groups = (await readImageFile(root, "/etc/group"))?.split("\n").map((l) => l.split(":")) ?? [];
      const found = groups.find((f) => f.length >= 3 && f[0] === group);
      if (!found) throw new BuildFsError(`group ${group} is not in the image's /etc/group`);
      gid = Number(found[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid)) throw new BuildFsError(`${spec}: the image's /etc/passwd or /etc/group has a malformed entry`);
  return { uid, gid, ...(entry?.[5] && { home: entry[5] }) };
}

const GLOB = /[*?[]/;

function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        re += `[${pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** The paths in the uploaded files that `src` names: itself, or what its wildcards match. */
async function matchSources(dir: string, src: string): Promise<string[]> {
  if (src === ".") return ["."];
  let found = [""];
  for (const part of src.split("/")) {
    const next: string[] = [];
    for (const base of found) {
      // Only through real directories: a symlink on the way is a leaf, never descended (on the host).
      if (base !== "" && !(await lstat(join(dir, base)).then((st) => st.isDirectory(), () => false))) continue;
      if (!GLOB.test(part)) {
        if (await lstat(join(dir, base, part)).then(() => true, () => false)) next.push(posix.join(base, part));
        continue;
      }
      const re = globToRegExp(part);
      const names = await readdir(join(dir, base)).catch(() => [] as string[]);
      for (const name of names.sort()) if (re.test(name)) next.push(posix.join(base, name));
    }
    found = next;
  }
  return found;
}

/** `tar -c` of `names` in `dir` (owners and modes as the copy step says) into the confined `tar -x` at `target`. */
async function tarInto(dir: string, names: string[], target: string, owner: { uid: number; gid: number }, chmod?: string): Promise<void> {
  const create = ["tar", "-c", "-f", "-", "--numeric-owner", `--owner=${owner.uid}`, `--group=${owner.gid}`, ...(chmod ? [`--mode=${chmod}`] : []), "-C", dir, "--", ...names];
  // The writer first, so the reader's stdout is piped on the tick it is spawned: node discards a
  // child's unread stdout when it exits, which tar does at once for a small archive.
  const writer = await startConfinedTar(target, ["-x", "-f", "-", "--same-owner", "--numeric-owner", "--same-permissions", "--no-overwrite-dir", "-C", CONFINED_TARGET]);
  const reader = spawn(create[0]!, create.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  reader.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096)));
  const readerDone = new Promise<void>((resolve, reject) => {
    reader.on("error", (e) => reject(new CommandError(create, notStarted(create[0]!, e))));
    reader.on("close", (code, signal) => (code === 0 ? resolve() : reject(new CommandError(create, { code, signal, stdout: "", stderr }))));
  });
  const settled = await Promise.allSettled([readerDone, writer.done, pipeline(reader.stdout, writer.stdin)]);
  // The reader's complaint first: when it fails, the writer only sees a cut-off archive.
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    reader.kill("SIGKILL");
    writer.kill();
    throw failed.reason;
  }
}

/**
 * A copy step, Docker's COPY rules: a directory's contents go into `dest`; a file goes into `dest`
 * when it ends in / (or names a directory in the image, or several sources are copied), else it
 * becomes `dest`. `files` is the unpacked uploaded object.
 */
export async function copyIntoImage(root: string, files: string, step: Extract<ImageStep, { kind: "copy" }>, scratch: string): Promise<number> {
  const matches: string[] = [];
  for (const src of step.src) {
    const found = await matchSources(files, src);
    if (found.length === 0) throw new BuildFsError(`${src}: no such file or directory in the uploaded files`);
    matches.push(...found);
  }
  const destPath = step.dest.replace(/\/$/, "") || "/";
  const existing = await resolveInRoot(root, destPath);
  const destIsDir = step.dest.endsWith("/") || (existing.exists && (await lstat(existing.host)).isDirectory());
  if (matches.length > 1 && !destIsDir) throw new BuildFsError(`${step.src.join(" ")} names ${matches.length} files: the destination ${step.dest} must be a directory ending in /`);
  const owner = step.chown ? await lookupUser(root, step.chown) : { uid: 0, gid: 0 };
  const chmod = step.chmod;
  const filesRoot = await realpath(files);
  for (const rel of matches) {
    const source = join(files, rel);
    // The host reads these as root: a source reached through a symlink (the uploaded files' own,
    // chained up and out) must still be inside them. tar itself never follows links it packs.
    const where = await realpath(rel === "." ? source : dirname(source)).catch(() => "");
    if (where !== filesRoot && !where.startsWith(`${filesRoot}/`)) throw new BuildFsError(`${rel}: reached through a symlink that leads outside the uploaded files`);
    if ((await lstat(source)).isDirectory()) {
      await tarInto(source, ["."], (await resolveInRoot(root, destPath, true)).host, owner, chmod);
    } else if (destIsDir) {
      await tarInto(dirname(source), [basename(source)], (await resolveInRoot(root, destPath, true)).host, owner, chmod);
    } else {
      // A file copied to a new name: staged under that name (a hard link, no data copied).
      const stage = await mkdtemp(join(scratch, "copy-"));
      try {
        const name = posix.basename(destPath);
        await link(source, join(stage, name)).catch(() => copyFile(source, join(stage, name)));
        await tarInto(stage, [name], (await resolveInRoot(root, posix.dirname(destPath), true)).host, owner, chmod);
      } finally {
        await rm(stage, { recursive: true, force: true });
      }
    }
  }
  return matches.length;
}
