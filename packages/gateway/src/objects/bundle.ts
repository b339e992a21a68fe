/**
 * Validation of code bundles (tar, optionally gzip-compressed) before they are accepted into the
 * object store. A bundle is unpacked inside containers later, so every entry must stay inside the
 * bundle root: no absolute paths, no `..`, no links that point outside, no device nodes or FIFOs.
 * Headers are read by the shared strict reader (@beta9/protocol/tar-reader), the same one the
 * worker checks with before it unpacks, so what is checked here is what tar will write there.
 */
import { createReadStream } from "node:fs";
import { posix } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { TarFormatError, TarReader, type TarEntry } from "@beta9/protocol/tar-reader";

export class BundleError extends Error {
  override name = "BundleError";
}

export const MAX_BUNDLE_ENTRIES = 200_000;

/** Rejects a path that is absolute or climbs out of the root; returns it normalized. */
export function checkEntryPath(raw: string, what = "entry"): string {
  if (raw.includes("\0")) throw new BundleError(`${what} ${JSON.stringify(raw)} contains a NUL byte`);
  if (raw.startsWith("/") || /^[A-Za-z]:[\\/]/.test(raw) || raw.startsWith("\\")) {
    throw new BundleError(`${what} ${JSON.stringify(raw)} is an absolute path; bundle paths must be relative`);
  }
  if (raw.split(/[\\/]/).includes("..")) {
    throw new BundleError(`${what} ${JSON.stringify(raw)} contains "..", which would escape the bundle root`);
  }
  return posix.normalize(raw);
}

function checkLinkTarget(entry: string, target: string, hard: boolean): void {
  if (target.startsWith("/")) {
    throw new BundleError(`link ${JSON.stringify(entry)} points to the absolute path ${JSON.stringify(target)}`);
  }
  const resolved = hard ? posix.normalize(target) : posix.normalize(posix.join(posix.dirname(entry), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw new BundleError(`link ${JSON.stringify(entry)} points outside the bundle (${JSON.stringify(target)})`);
  }
}

export interface BundleSummary {
  entries: number;
  files: number;
  bytes: number;
}

/**
 * What earlier entries made: symlinks, and every directory an entry's path went through. A target
 * is checked by its spelling, so a link reached through another link (`s -> .`, then `s/up -> ..`)
 * could climb out when something on the host follows them: no entry's path, and no link's target,
 * may pass through a symlink, and a symlink may not stand where a directory was used.
 */
interface LinkState {
  symlinks: Set<string>;
  dirs: Set<string>;
}

function checkNotThroughLinks(path: string, state: LinkState): void {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const prefix = parts.slice(0, i).join("/");
    if (state.symlinks.has(prefix)) throw new BundleError(`entry ${JSON.stringify(path)} passes through the symlink ${JSON.stringify(prefix)}`);
    state.dirs.add(prefix);
  }
}

/** A symlink's target, walked from its directory: it may not step through another symlink. */
function checkTargetNotThroughLinks(entry: string, target: string, state: LinkState): void {
  const stack = posix.dirname(entry) === "." ? [] : posix.dirname(entry).split("/");
  const parts = target.split("/").filter((p) => p !== "" && p !== ".");
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === "..") stack.pop();
    else {
      stack.push(parts[i]!);
      if (i < parts.length - 1 && state.symlinks.has(stack.join("/"))) {
        throw new BundleError(`link ${JSON.stringify(entry)} points through the symlink ${JSON.stringify(stack.join("/"))}`);
      }
    }
  }
}

/** Applies the bundle rules to each entry the shared strict reader yields. */
function checkEntry(entry: TarEntry, summary: BundleSummary, state: LinkState): void {
  summary.entries += 1;
  if (summary.entries > MAX_BUNDLE_ENTRIES) throw new BundleError(`more than ${MAX_BUNDLE_ENTRIES} entries`);
  const path = checkEntryPath(entry.name);
  checkNotThroughLinks(path, state);
  switch (entry.type) {
    case "file":
      summary.files += 1;
      summary.bytes += entry.size;
      break;
    case "dir":
      break;
    case "hardlink":
      checkLinkTarget(path, checkEntryPath(entry.linkname, "hard link target"), true);
      break;
    case "symlink":
      checkLinkTarget(path, entry.linkname, false);
      checkTargetNotThroughLinks(path, entry.linkname, state);
      if (state.dirs.has(path)) throw new BundleError(`symlink ${JSON.stringify(path)} replaces a directory earlier entries went through`);
      state.symlinks.add(path);
      break;
    default:
      throw new BundleError(`entry ${JSON.stringify(path)} is a device node or FIFO; bundles hold files, directories and links`);
  }
}

/** Checks a bundle file on disk (tar or tar.gz); throws {@link BundleError} with the reason. */
export async function checkBundleFile(path: string): Promise<BundleSummary> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    createReadStream(path, { start: 0, end: 1 })
      .on("data", (c) => chunks.push(c as Buffer))
      .on("end", () => resolve(Buffer.concat(chunks)))
      .on("error", reject);
  });
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;
  const summary: BundleSummary = { entries: 0, files: 0, bytes: 0 };
  const state: LinkState = { symlinks: new Set(), dirs: new Set() };
  const reader = new TarReader((entry) => checkEntry(entry, summary, state));
  const checker = new Writable({
    write(chunk: Buffer, _enc, done) {
      try {
        reader.push(chunk);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
  try {
    if (gzipped) await pipeline(createReadStream(path), createGunzip(), checker);
    else await pipeline(createReadStream(path), checker);
    if (summary.entries === 0 && reader.end === undefined) throw new BundleError("not a tar archive (too short to hold a tar header)");
    reader.finish();
  } catch (err) {
    if (err instanceof BundleError) throw err;
    if (err instanceof TarFormatError) throw new BundleError(err.message);
    throw new BundleError(gzipped ? `the gzip stream is corrupt (${(err as Error).message})` : (err as Error).message);
  }
  return summary;
}
