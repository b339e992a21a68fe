/**
 * After the first start, `beta9 up` prepares the default image (`new Image()`: Debian bookworm +
 * python3, about a minute of debootstrap the first time) in the background, with a progress line
 * now and then, so the first deploy that uses it does not sit silent for a minute.
 */
import { Client, Image } from "beta9";
import { formatError } from "../errors.js";
import { color, print } from "../output.js";

/** How often a long build says it is still going. */
const PROGRESS_EVERY_MS = 15_000;

export interface PrepareImageOptions {
  url: string;
  token: string;
  tlsCa?: string;
  /** Where lines go (default: stdout). */
  say?: (line: string) => void;
  /** Aborted when `up` shuts down: the build goes on in the worker, this follower stops quietly. */
  signal?: AbortSignal;
}

/**
 * Builds the default image unless it is ready. Resolves when it is ready or has failed (a failure
 * is reported, never thrown: the first deploy that needs the image builds it then).
 */
export async function prepareDefaultImage(options: PrepareImageOptions): Promise<"ready" | "built" | "failed"> {
  const say = options.say ?? ((line: string) => print(line));
  const client = new Client({ gateway: options.url, token: options.token, ...(options.tlsCa && { tlsCa: options.tlsCa }) });
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 1000);
  let timer: NodeJS.Timeout | undefined;
  const stop = () => void client.destroy();
  options.signal?.addEventListener("abort", stop, { once: true });
  try {
    let image = await client.buildImage(new Image().toSpec());
    if (image.status === "ready") return "ready";
    say(color.dim(`default image (Debian bookworm + python3): preparing in the background, about a minute the first time, so the first new Image() deploy does not wait; beta9 image list shows it`));
    let last = "";
    timer = setInterval(() => say(color.dim(`default image: still preparing (${seconds()} s)${last ? `: ${last}` : ""}`)), PROGRESS_EVERY_MS);
    timer.unref();
    if (image.status === "building") {
      for await (const event of client.followImageBuild(image.id)) {
        if (event.kind === "log") last = event.line.line.slice(0, 120);
        if (event.kind === "end") image = event.image;
      }
    }
    if (image.status !== "ready") throw new Error(image.error ?? `the build ended ${image.status}`);
    say(`default image: ready in ${seconds()} s (${image.id.slice(0, 12)})`);
    return "built";
  } catch (err) {
    if (options.signal?.aborted) return "failed";
    say(`default image: not prepared (${formatError(err)}); the first deploy that uses it builds it`);
    return "failed";
  } finally {
    clearInterval(timer);
    options.signal?.removeEventListener("abort", stop);
    await client.close();
  }
}
