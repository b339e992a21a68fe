/**
 * Image builds between gateways on a shared store. A build request can reach a gateway with no
 * worker to build on (behind a load balancer, say): that gateway offers the build, and a gateway
 * that has one takes it (one taker: the store hands it out with SKIP LOCKED), builds it, and marks
 * the image ready or failed in the store. The offering gateway follows the image's status there
 * to answer its own followers, and withdraws an offer nobody took within the worker wait.
 * Nothing here runs on a store one gateway owns (SQLite: offer() says no).
 */
import type { Image } from "@beta9/protocol";
import type { Logger } from "pino";
import type { ImageRepo } from "../store/types.js";

const POLL_MS = 1000;
const TAKE_CHECK_MS = 5000;

export interface HandoffHooks {
  images: ImageRepo;
  logger?: Logger;
  /** Whether this gateway has a worker that may build now. */
  canBuild(): boolean;
  /** Starts a build this gateway took. */
  adopt(offer: { id: string; spec: unknown; workspaceId: string }): void;
  /** How long an offer may wait for a taker. */
  workerWaitMs: number;
}

export class BuildHandoff {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly unsubscribe: () => void;
  private taking = false;

  constructor(private readonly h: HandoffHooks) {
    this.unsubscribe = h.images.onOffered(() => void this.take());
    const timer = setInterval(() => void this.take(), TAKE_CHECK_MS);
    timer.unref();
    this.timers.add(timer);
  }

  /**
   * Offers the build; resolves false when no other gateway could take it (then the caller waits
   * for a worker of its own). Once offered, `ended` gets the image when its build ends wherever it
   * ran, or `unclaimed` when nobody took it in time.
   */
  async offer(id: string, ended: (image: Image) => void, unclaimed: () => void): Promise<boolean> {
    if (!(await this.h.images.offer(id))) return false;
    const since = Date.now();
    const timer = setInterval(() => {
      void (async () => {
        const image = await this.h.images.getAny(id);
        if (!image || image.status !== "building") {
          this.stop(timer);
          if (image) ended(image);
          return;
        }
        if (Date.now() - since > this.h.workerWaitMs && (await this.h.images.withdraw(id))) {
          this.stop(timer);
          unclaimed();
        }
      })().catch((err: unknown) => this.h.logger?.warn({ err, imageId: id }, "could not follow a build handed to another gateway"));
    }, POLL_MS);
    timer.unref();
    this.timers.add(timer);
    return true;
  }

  /** Takes what other gateways offered, while this one has a worker to build on. */
  private async take(): Promise<void> {
    if (this.taking) return;
    this.taking = true;
    try {
      while (this.h.canBuild()) {
        const offer = await this.h.images.takeOffered();
        if (!offer) break;
        this.h.adopt(offer);
      }
    } catch (err) {
      this.h.logger?.warn({ err }, "could not take a build another gateway offered");
    } finally {
      this.taking = false;
    }
  }

  private stop(timer: NodeJS.Timeout): void {
    clearInterval(timer);
    this.timers.delete(timer);
  }

  close(): void {
    this.unsubscribe();
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
  }
}
