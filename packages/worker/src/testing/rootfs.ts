/**
 * Test fixtures for the runc runtime: a "host-dir" image (feasibility notes §2 B). The lower dir
 * is a skeleton — bin/lib/lib64/sbin symlinks into usr, an empty usr, etc/passwd and etc/group,
 * and empty tmp/proc/sys/dev — and the host's /usr is bound read-only over the empty usr. That
 * gives node, python3 and a shell inside without building an image.
 */
import { mkdirSync, mkdtempSync, readdirSync, lstatSync, readlinkSync, rmSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Mount } from "../runtime/types.js";

export interface HostRootfs {
  /** The skeleton: use as the single lower dir. */
  lowerDir: string;
  /** The read-only /usr bind that goes with it. */
  mounts: Mount[];
  /** Removes the skeleton. */
  remove(): void;
}

export function createHostRootfs(parent: string = tmpdir()): HostRootfs {
  const root = mkdtempSync(join(parent, "b9-rootfs-"));
  const lowerDir = join(root, "lower");
  for (const dir of ["usr", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run"]) mkdirSync(join(lowerDir, dir), { recursive: true });
  for (const link of ["bin", "lib", "lib64", "sbin"]) {
    if (existsSync(`/usr/${link}`)) symlinkSync(`usr/${link}`, join(lowerDir, link));
  }
  writeFileSync(join(lowerDir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  writeFileSync(join(lowerDir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  return {
    lowerDir,
    mounts: [{ source: "/usr", destination: "/usr", readOnly: true }],
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** A comparable listing of a tree (path, type, mode, size, mtime, link target) to prove it was not written. */
export function snapshotTree(dir: string): string[] {
  const entries: string[] = [];
  const walk = (path: string, relative: string): void => {
    const stat = lstatSync(path);
    const target = stat.isSymbolicLink() ? ` -> ${readlinkSync(path)}` : "";
    entries.push(`${relative || "."} ${stat.mode.toString(8)} ${stat.size} ${stat.mtimeMs} ${stat.uid}:${stat.gid}${target}`);
    if (stat.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name), join(relative, name));
  };
  walk(dir, "");
  return entries;
}
