/**
 * The sha256 of a file that is still being written, computed on a thread of its own that reads
 * behind the writer (from the page cache). A large volume content is received, written and hashed
 * at once: on the event loop, hashing (about 1.7 GB/s with SHA-NI) would add half again to the
 * time the receive and the write take, and a first read on a new worker would run at about 0.4× a
 * plain HTTP download (bench/volume.bench.mjs).
 *
 * The writer says how far the file is whole (`progress`), then `finish(size)` answers the hash.
 * The read descriptor is this thread's (the hashing thread only reads through its number), so it is
 * closed however the thread ends: a terminated thread closes nothing.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { createHash } from "node:crypto";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

interface Progress {
  upTo: number;
  end?: boolean;
}

type Reply = { hash: string } | { error: string };

export class HashFollower {
  private readonly thread: Worker;
  private readonly fd: number;
  private answer?: { resolve(hash: string): void; reject(err: Error): void };
  private failure?: Error;

  constructor(path: string) {
    this.fd = openSync(path, "r");
    try {
      this.thread = new Worker(new URL(import.meta.url), { workerData: { fd: this.fd } });
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
    this.thread.on("message", (reply: Reply) => {
      if ("hash" in reply) this.answer?.resolve(reply.hash);
      else this.fail(new Error(`hashing ${path}: ${reply.error}`));
    });
    this.thread.on("error", (err) => this.fail(err));
    // Only once the thread has stopped reading through it.
    this.thread.once("exit", () => {
      closeSync(this.fd);
      this.fail(new Error(`hashing ${path}: the thread ended before its answer`));
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.answer?.reject(this.failure);
  }

  /** The first `upTo` bytes of the file are written. */
  progress(upTo: number): void {
    this.thread.postMessage({ upTo } satisfies Progress);
  }

  /** The file is whole at `size` bytes: its sha256 (hex). The thread ends. */
  finish(size: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.answer = { resolve, reject };
      this.thread.postMessage({ upTo: size, end: true } satisfies Progress);
    }).finally(() => void this.thread.terminate());
  }

  /** Stops the thread without an answer (the download failed). */
  abort(): void {
    this.answer = undefined;
    void this.thread.terminate();
  }
}

function follow(fd: number): void {
  const digest = createHash("sha256");
  const buf = Buffer.allocUnsafe(4 << 20);
  let at = 0;
  parentPort!.on("message", (m: Progress) => {
    try {
      while (at < m.upTo) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, m.upTo - at), at);
        if (n <= 0) throw new Error(`the file ends at ${at} bytes, ${m.upTo} were written`);
        digest.update(buf.subarray(0, n));
        at += n;
      }
      if (m.end) {
        parentPort!.postMessage({ hash: digest.digest("hex") } satisfies Reply);
      }
    } catch (err) {
      parentPort!.postMessage({ error: (err as Error).message } satisfies Reply);
    }
  });
}

if (!isMainThread && typeof (workerData as { fd?: number } | undefined)?.fd === "number") follow((workerData as { fd: number }).fd);
