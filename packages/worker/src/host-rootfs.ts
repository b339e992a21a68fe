/**
 * The worker's built-in image for containers that name none: an empty skeleton whose /usr is
 * the host's /usr bound read-only. It gives node, python3 and a shell without any image build,
 * which is what `beta9 container run` and the tests use. Real workloads name a packed image.
 */
import { mkdirSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { Mount } from "./runtime/types.js";

const SKELETON_VERSION = "1";

/** Creates (once) and returns the skeleton directory under `dir`. */
export function ensureHostRootfs(dir: string): string {
  const root = join(dir, `host-rootfs-v${SKELETON_VERSION}`);
  if (existsSync(join(root, ".complete"))) return root;
  for (const d of ["usr", "etc", "tmp", "proc", "sys", "dev", "root", "run", "var/tmp"]) mkdirSync(join(root, d), { recursive: true });
  for (const [link, target] of [["bin", "usr/bin"], ["lib", "usr/lib"], ["lib64", "usr/lib64"], ["sbin", "usr/sbin"]] as const) {
    if (!existsSync(join(root, link))) symlinkSync(target, join(root, link));
  }
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  writeFileSync(join(root, "etc/hosts"), "127.0.0.1 localhost\n");
  writeFileSync(join(root, ".complete"), "");
  return root;
}

export const HOST_USR_MOUNT: Mount = { source: "/usr", destination: "/usr", readOnly: true };
