/**
 * Image builds between gateways on a shared store. A build request can reach a gateway with no
 * worker to build on (behind a load balancer, say): that gateway offers the build, and another
 * gateway that has one takes it (one taker: the store hands it out with SKIP LOCKED; never the
 * offering gateway itself), builds it, and marks the image ready or failed in the store. The
 * offering gateway follows the image's status there to answer its own followers, withdraws an
 * offer nobody took within the worker wait, and takes its own offers back once a worker of its own
 * connects. Nothing here runs on a store one gateway owns (SQLite: offer() says no).
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
  /** This gateway's own offers, to take back and build here once it can. */
  ownOffers(): string[];
  /** An own offer taken back: build it here. */
  reclaimed(id: string): void;
  /** How long an offer may wait for a taker. */
  workerWaitMs: number;
}

export interface OfferOutcome {
  /** The build ended wherever it ran (undefined: the image's row is gone). */
  ended(image: Image | undefined): void;
  /** Nobody took it within the worker wait (it is this gateway's again). */
  unclaimed(): void;
}

export class BuildHandoff {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly unsubscribe: () => void;
  private readonly interval: NodeJS.Timeout;
  private taking = false;
  private closed = false;

  constructor(private readonly h: HandoffHooks) {
    this.unsubscribe = h.images.onOffered(() => void this.take());
    this.interval = setInterval(() => void this.take(), TAKE_CHECK_MS);
    this.interval.unref();
  }

  /** Offers the build; false when no other gateway could take it (then the caller waits for a worker of its own). */
  async offer(id: string, outcome: OfferOutcome): Promise<boolean> {
    if (this.closed || !(await this.h.images.offer(id))) return false;
    const since = Date.now();
    // A chain, not an interval: a slow store never has two looks of one offer in flight.
    const look = async (): Promise<void> => {
      const following = () => !this.closed && this.timers.has(id);
      if (!following()) return;
      const image = await this.h.images.getAny(id);
      if (!following()) return; // taken back (or closed) meanwhile
      if (!image || image.status !== "building") {
        this.forget(id);
        outcome.ended(image);
        return;
      }
      if (Date.now() - since > this.h.workerWaitMs && (await this.h.images.withdraw(id))) {
        this.forget(id);
        outcome.unclaimed();
        return;
      }
      if (following()) this.schedule(id, look);
    };
    this.schedule(id, look);
    return true;
  }

  /** Stops following an offer (it was taken back). */
  forget(id: string): void {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  private schedule(id: string, look: () => Promise<void>): void {
    const timer = setTimeout(() => {
      look().catch((err: unknown) => {
        this.h.logger?.warn({ err, imageId: id }, "could not follow a build handed to another gateway");
        if (this.timers.get(id) === timer) this.schedule(id, look);
      });
    }, POLL_MS);
    timer.unref();
    this.timers.set(id, timer);
  }

  /** While this gateway has a worker: its own offers back first, then what other gateways offered. */
  private async take(): Promise<void> {
    if (this.taking || this.closed) return;
    this.taking = true;
    try {
      if (!this.h.canBuild()) return;
      for (const id of this.h.ownOffers()) {
        if (this.closed) return;
        if (await this.h.images.withdraw(id)) {
          this.forget(id);
          this.h.reclaimed(id);
        }
      }
      while (!this.closed && this.h.canBuild()) {
        const offer = await this.h.images.takeOffered();
        if (!offer) break;
        this.h.adopt(offer);
      }
    } catch (err) {
      this.h.logger?.warn({ err }, "could not take a build offered between gateways");
    } finally {
      this.taking = false;
    }
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.interval);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
