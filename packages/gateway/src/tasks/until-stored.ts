/**
 * An attempt's outcome must reach the store: a handler that ran and whose COMPLETE was not written
 * would stay RUNNING, this live gateway's, and nobody would take it over. While the database is
 * unreachable (STORE_UNAVAILABLE: restarting, failing over), the write is tried again with backoff
 * until it lands or the dispatcher closes; then the task stays RUNNING, and the next start (or
 * another gateway) resumes it on its container, whose runner kept the answer.
 */
import { Beta9Error } from "@beta9/protocol";

const FIRST_PAUSE_MS = 100;
const LONGEST_PAUSE_MS = 2000;

export async function untilStored<T>(write: () => Promise<T>, closed: () => boolean): Promise<T> {
  for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(LONGEST_PAUSE_MS, pause * 2)) {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof Beta9Error && err.code === "STORE_UNAVAILABLE") || closed()) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
