/**
 * Content digests: every byte that comes from a registry is hashed while it streams to disk and
 * only renamed into place when the hash matches, so a corrupt or truncated blob never looks valid.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

export class DigestMismatchError extends Error {
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`digest mismatch for ${what}: expected ${expected}, got ${actual}`);
    this.name = "DigestMismatchError";
  }
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest("hex")}`;
}

/** A pass-through that hashes and counts; it fails the stream once more than `maxBytes` arrive. */
export class HashingCounter extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor(
    private readonly maxBytes = Number.POSITIVE_INFINITY,
    private readonly onBytes?: (bytes: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) return done(new Error(`more than the expected ${this.maxBytes} bytes arrived`));
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    done(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

export interface VerifiedWriteOptions {
  /** What the bytes are, for error messages (e.g. "blob sha256:... of 127.0.0.1:5000/app"). */
  what: string;
  expectedDigest: string;
  expectedSize?: number;
  onBytes?: (bytes: number) => void;
}

/**
 * Streams `source` to a temp file beside `dest`, hashing as it goes, and renames it to `dest` only
 * when digest (and size, if known) match. On any failure the temp file is removed.
 */
export async function writeVerified(source: Readable, dest: string, options: VerifiedWriteOptions): Promise<number> {
  const tmp = `${dest}.partial-${randomBytes(6).toString("hex")}`;
  const counter = new HashingCounter(options.expectedSize, options.onBytes);
  try {
    await pipeline(source, counter, createWriteStream(tmp, { mode: 0o644 }));
    const actual = counter.digest();
    if (actual !== options.expectedDigest) throw new DigestMismatchError(options.what, options.expectedDigest, actual);
    if (options.expectedSize !== undefined && counter.bytes !== options.expectedSize) {
      throw new Error(`${options.what}: expected ${options.expectedSize} bytes, got ${counter.bytes}`);
    }
    await rename(tmp, dest);
    return counter.bytes;
  } catch (err) {
    source.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}
