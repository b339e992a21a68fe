/**
 * Content-addressed files on the gateway's disk: `<dir>/<aa>/<sha256>`. Uploads stream into a
 * temporary file while being hashed and counted; only bytes whose hash matches the name the
 * client gave, within the size limit, and (for code bundles) that pass the bundle check are
 * renamed into place. A failed upload leaves nothing behind.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Beta9Error } from "@beta9/protocol";
import { BundleError, checkBundleFile } from "./bundle.js";
import { clearTempFiles } from "./temp-files.js";

export class ObjectStore {
  private readonly tmpDir: string;

  /** `shared`: other gateways use `dir` too (see temp-files.ts). */
  constructor(readonly dir: string, readonly maxBytes: number, private readonly shared = false) {
    this.tmpDir = join(dir, "tmp");
  }

  /** Creates the directories and removes temp files an interrupted upload left behind. */
  async init(): Promise<void> {
    await clearTempFiles(this.tmpDir, this.shared);
  }

  pathOf(hash: string): string {
    return join(this.dir, hash.slice(0, 2), hash);
  }

  async has(hash: string): Promise<boolean> {
    return stat(this.pathOf(hash)).then(() => true, () => false);
  }

  open(hash: string): ReadStream {
    return createReadStream(this.pathOf(hash));
  }

  /**
   * Streams `body` into the store under `expectedHash`. Throws OBJECT_TOO_LARGE,
   * OBJECT_HASH_MISMATCH or BUNDLE_INVALID; on any failure the temp file is removed.
   */
  /** `maxBytes`: a lower limit for this write (a workspace's remaining quota); never above the store's. */
  async write(expectedHash: string, body: Readable, maxBytes = this.maxBytes): Promise<{ size: number }> {
    await mkdir(join(this.dir, expectedHash.slice(0, 2)), { recursive: true });
    return writeVerified(body, {
      tmpDir: this.tmpDir, target: this.pathOf(expectedHash), sha256: expectedHash, maxBytes: Math.min(maxBytes, this.maxBytes),
      validate: async (tmp) => {
        try {
          await checkBundleFile(tmp);
        } catch (err) {
          if (err instanceof BundleError) throw new Beta9Error("BUNDLE_INVALID", { reason: err.message });
          throw err;
        }
      },
    });
  }
}

export interface VerifiedWrite {
  tmpDir: string;
  target: string;
  /** The sha256 the bytes must hash to. */
  sha256: string;
  maxBytes: number;
  /** Extra checks on the complete temp file before it is renamed into place. */
  validate?: (tmpPath: string) => Promise<void>;
}

/**
 * Streams `body` to a temp file while hashing and counting it, and renames it to `target` only
 * if it is within the limit, hashes to the expected sha256 and passes `validate`. Throws
 * OBJECT_TOO_LARGE or OBJECT_HASH_MISMATCH (or what `validate` throws); a failure leaves nothing.
 */
export async function writeVerified(body: Readable, w: VerifiedWrite): Promise<{ size: number }> {
  const tmp = join(w.tmpDir, randomUUID());
  const hash = createHash("sha256");
  let size = 0;
  const limit = w.maxBytes;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      size += chunk.length;
      if (size > limit) return callback(new Beta9Error("OBJECT_TOO_LARGE", { limit }));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(body, meter, createWriteStream(tmp, { flags: "wx", mode: 0o600 }));
    const actual = hash.digest("hex");
    if (actual !== w.sha256) throw new Beta9Error("OBJECT_HASH_MISMATCH", { actual, expected: w.sha256 });
    await w.validate?.(tmp);
    // Same name means same bytes, so replacing a concurrent writer's file is harmless.
    await rename(tmp, w.target);
    return { size };
  } catch (err) {
    body.resume(); // drain what the client still sends, so the error reply can be read
    await rm(tmp, { force: true });
    throw err;
  }
}
