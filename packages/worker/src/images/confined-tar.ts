/**
 * The second wall around untrusted archives (image layers, code bundles): GNU tar runs in a
 * private mount namespace, chrooted into a fresh read-only tmpfs that holds only the host's /usr
 * (read-only, for tar and its libraries) and the target directory, bound at /target. Whatever the
 * names and symlinks in the archive say, the only writable place tar can reach is the target: an
 * absolute symlink resolves inside the empty tmpfs, `..` stops at its root, and a hard link to
 * anything outside the target crosses a mount (EXDEV). The header checks before extraction are
 * the first wall; this one holds if they ever disagree with tar.
 *
 * Costs about 10 ms a run (a few mount calls); needs root, as every other image operation does.
 */
import { lstatSync } from "node:fs";
import { mkdtemp, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Transform, type TransformCallback, type Writable } from "node:stream";
import { start } from "../exec.js";

/** Where tar sees the target directory inside its chroot. */
export const CONFINED_TARGET = "/target";

// $1 target, $2 the (empty) host dir the tmpfs is mounted on; then tar's argv. The namespace dies
// with tar, taking every mount with it; nothing is ever mounted in the host's namespace.
const SCRIPT = `set -eu
target=$1; root=$2; shift 2
mount -t tmpfs -o mode=0755,size=64k,nosuid,nodev,noexec beta9-untar "$root"
cd "$root"
mkdir target $BETA9_DIRS
[ -z "$BETA9_LINKS" ] || cp -P $BETA9_LINKS .
for d in $BETA9_DIRS; do mount --bind -o ro "/$d" "$d"; done
mount --bind -o nosuid,nodev "$target" target
cd /
mount -o remount,ro "$root"
exec chroot "$root" "$@"`;

let layout: { dirs: string; links: string } | undefined;

/** The host's top-level program dirs: real ones are bound read-only, merged-/usr links copied. */
function hostLayout(): { dirs: string; links: string } {
  if (layout) return layout;
  const dirs: string[] = [];
  const links: string[] = [];
  for (const name of ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    const st = (() => {
      try {
        return lstatSync(`/${name}`);
      } catch {
        return undefined;
      }
    })();
    if (st?.isSymbolicLink()) links.push(`/${name}`);
    else if (st?.isDirectory()) dirs.push(name);
  }
  if (!dirs.includes("usr")) throw new Error("confined tar: the host has no /usr");
  layout = { dirs: dirs.join(" "), links: links.join(" ") };
  return layout;
}

export interface ConfinedTar {
  stdin: Writable;
  /** Settles when tar has exited; rejects with a {@link CommandError} naming tar's complaint. */
  done: Promise<void>;
  kill(): void;
}

/**
 * Starts `tar <args>` confined to `target` (an existing directory): pass `-C /target`
 * ({@link CONFINED_TARGET}) and `-f -`; the archive goes to `stdin`.
 */
export async function startConfinedTar(target: string, args: string[]): Promise<ConfinedTar> {
  if (process.getuid?.() !== 0) throw new Error("extracting an untrusted archive needs root (tar runs in a private mount namespace)");
  const { dirs, links } = hostLayout();
  const root = await mkdtemp(join(tmpdir(), "beta9-untar-"));
  const tar = start("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT, "beta9-untar", target, root, "tar", ...args], {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", BETA9_DIRS: dirs, BETA9_LINKS: links },
    shownAs: ["tar", ...args],
  });
  return { ...tar, done: tar.done.finally(() => rmdir(root).catch(() => {})) };
}

/**
 * Passes on the first `end` bytes of a tar stream (all of them when `end` is undefined), then an
 * end-of-archive marker: tar gets exactly the bytes that were checked, never what follows the zero
 * block where the check stopped.
 */
export class TarCut extends Transform {
  private seen = 0;

  constructor(private readonly limit: number | undefined) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const room = this.limit === undefined ? chunk.length : Math.max(0, this.limit - this.seen);
    this.seen += chunk.length;
    done(null, room >= chunk.length ? chunk : room > 0 ? chunk.subarray(0, room) : undefined);
  }

  override _flush(done: TransformCallback): void {
    done(null, Buffer.alloc(1024));
  }
}
