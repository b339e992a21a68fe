/**
 * A small image with a shell, for build tests that must not reach the internet: the host's dash
 * and a few coreutils with the shared libraries `ldd` names, laid out usr-merged (/bin, /lib and
 * /lib64 are links into /usr, as on Debian, so copies into them must follow links inside the
 * image), plus /etc/passwd and /etc/group with a user `app` (1000:1000) whose home it owns.
 * `python3` is a link to the shell: a stand-in that satisfies the Python SDK's "is there a
 * python3" check; nothing runs Python in it.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { sha256Digest } from "./digest.js";
import { hostPlatform, MediaType } from "./oci.js";
import type { PushImage } from "./registry.js";
import { makeTar, type TarSpec } from "./testing.js";

const PROGRAMS = ["dash", "cat", "id", "stat", "ls", "mkdir", "touch", "env"];

/** Where a host path goes in the usr-merged image: /lib/x → usr/lib/x, /usr/bin/x stays. */
function inImage(path: string): string {
  const rel = path.replace(/^\/+/, "");
  return rel.startsWith("usr/") ? rel : `usr/${rel}`;
}

function which(program: string): string {
  for (const dir of ["/usr/bin", "/bin"]) {
    try {
      if (statSync(join(dir, program)).isFile()) return join(dir, program);
    } catch {
      // not here
    }
  }
  throw new Error(`the shell test image needs ${program} on this machine`);
}

export async function buildShellImage(dir: string, marker: string): Promise<PushImage> {
  const files = new Map<string, { source: string; mode: number }>();
  for (const program of PROGRAMS) {
    const path = which(program);
    files.set(`usr/bin/${program}`, { source: realpathSync(path), mode: 0o755 });
    const libs = execFileSync("ldd", [path], { encoding: "utf8" });
    for (const m of libs.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) files.set(inImage(m[1]!), { source: realpathSync(m[1]!), mode: 0o755 });
  }
  const dirs = new Set<string>(["usr/", "usr/bin/", "etc/", "tmp/", "root/"]);
  for (const name of files.keys()) {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(`${parts.slice(0, i).join("/")}/`);
  }
  const entries: TarSpec[] = [
    ...[...dirs].sort().map((name): TarSpec => ({ name, type: "dir", mode: name === "tmp/" ? 0o1777 : 0o755 })),
    { name: "bin", type: "symlink", linkname: "usr/bin" },
    { name: "lib", type: "symlink", linkname: "usr/lib" },
    { name: "lib64", type: "symlink", linkname: "usr/lib64" },
    { name: "usr/bin/sh", type: "symlink", linkname: "dash" },
    { name: "usr/bin/python3", type: "symlink", linkname: "dash" },
    ...[...files].map(([name, f]): TarSpec => ({ name, content: readFileSync(f.source), mode: f.mode })),
    { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n" },
    { name: "etc/group", content: "root:x:0:\napp:x:1000:\n" },
    { name: "etc/marker", content: `${marker}\n` },
    { name: "home/", type: "dir" },
    { name: "home/app/", type: "dir", uid: 1000, gid: 1000 },
  ];
  const tar = makeTar(entries);
  const path = join(dir, `shell-${marker}.tar.gz`);
  await writeFile(path, gzipSync(tar, { level: 1 }));
  const config = Buffer.from(JSON.stringify({
    ...hostPlatform(),
    config: { Env: ["PATH=/usr/bin:/bin", "BASE_MARKER=from-the-base-config"] },
    rootfs: { type: "layers", diff_ids: [sha256Digest(tar)] },
  }));
  return { config, layers: [{ path, mediaType: MediaType.ociLayerGzip }] };
}
