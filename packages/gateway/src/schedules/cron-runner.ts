/**
 * The cron runner: fires deployed schedules. Every interval it works out, for each live
 * `schedule/deployment` stub, the latest tick of its cron expression (UTC) that is due and falls
 * after the deployment was created, and claims that tick in the store; only the claim's winner
 * puts a task on the stub. So a tick fires at most once, across restarts and across gateway
 * processes sharing a store, and ticks missed while no gateway ran fire once (the latest only),
 * never as a burst.
 *
 * The claim comes before the task: a crash (or a failing `put`) between the two loses that tick
 * rather than risking a second run.
 */
import type { Logger } from "pino";
import { Cron } from "croner";
import type { Stub } from "@beta9/protocol";
import type { ActiveSchedule, Store } from "../store/types.js";

export interface CronRunnerOptions {
  store: Pick<Store, "schedules">;
  /** Starts one run of the schedule; `scheduledAt` is the tick that fired. */
  put: (stub: Stub, scheduledAt: Date) => Promise<unknown>;
  logger?: Logger;
  now?: () => Date;
  /** How often ticks are checked (default 1 s). */
  intervalMs?: number;
  /** How long the list of live schedules is reused, by `now` (default 5 s). */
  refreshMs?: number;
}

/** What the runner remembers of one schedule between checks. */
interface Plan {
  when: string;
  deployedAt: number;
  cron: Cron;
  /** Latest tick ≤ the last check (after `deployedAt`), if any. */
  latest: Date | undefined;
  /** First tick after the last check; null when the expression has no further tick. */
  next: Date | null;
  /** The latest tick this runner claimed or saw claimed: never claimed again. */
  settled: number;
}

/** Croner forms that the protocol accepts under other names, or reads differently from cron. */
function toCronerPattern(when: string): string {
  const w = when.trim();
  if (w === "@midnight") return "@daily";
  // Croner reads `?` as "the time the job was created", which differs per process; in cron it
  // means "any" (day of month / day of week).
  return w.replaceAll("?", "*");
}

/** The latest tick t of `cron` with after < t ≤ now; searches back in doubling windows. */
export function latestTick(cron: Cron, after: number, now: Date): Date | undefined {
  const end = now.getTime();
  if (end <= after) return undefined;
  for (let span = 60_000; ; span *= 2) {
    const from = Math.max(after, end - span);
    let t = cron.nextRun(new Date(from));
    if (t && t.getTime() <= end) {
      for (let n = cron.nextRun(t); n && n.getTime() <= end; n = cron.nextRun(n)) t = n;
      return t;
    }
    if (from === after) return undefined;
  }
}

export class CronRunner {
  private readonly now: () => Date;
  private readonly plans = new Map<string, Plan>();
  /** Expressions croner refused, by stub id (logged once). */
  private readonly refused = new Map<string, string>();
  private schedules: ActiveSchedule[] = [];
  private loadedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly o: CronRunnerOptions) {
    this.now = o.now ?? (() => new Date());
  }

  start(): this {
    if (this.timer || this.closed) return this;
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? 1000);
    this.timer.unref();
    void this.tick();
    return this;
  }

  /** Stops the loop and waits for a check in progress (so the store can be closed after). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inflight;
  }

  /** One check of every live schedule; concurrent calls share the check in progress. */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inflight ??= this.check().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async check(): Promise<void> {
    const now = this.now();
    try {
      await this.load(now);
    } catch (err) {
      this.o.logger?.error({ err }, "cron runner: could not list the deployed schedules");
    }
    await Promise.all(this.schedules.map((s) => this.fire(s, now)));
  }

  private async load(now: Date): Promise<void> {
    const age = this.loadedAt === undefined ? Infinity : now.getTime() - this.loadedAt;
    if (age >= 0 && age < (this.o.refreshMs ?? 5000)) return;
    this.schedules = await this.o.store.schedules.activeSchedules();
    this.loadedAt = now.getTime();
    const live = new Set(this.schedules.map((s) => s.id));
    for (const id of this.plans.keys()) if (!live.has(id)) this.plans.delete(id);
    for (const id of this.refused.keys()) if (!live.has(id)) this.refused.delete(id);
  }

  private plan(s: ActiveSchedule): Plan | undefined {
    const when = s.config.when ?? "";
    const deployedAt = Date.parse(s.deployedAt);
    const known = this.plans.get(s.id);
    if (known && known.when === when && known.deployedAt === deployedAt) return known;
    if (this.refused.get(s.id) === when) return undefined;
    let cron: Cron;
    try {
      cron = new Cron(toCronerPattern(when), { utcOffset: 0 });
    } catch (err) {
      this.refused.set(s.id, when);
      this.o.logger?.error({ stub: s.id, name: s.name, when, err: (err as Error).message }, "cron runner: schedule never fires");
      return undefined;
    }
    // `next` starts in the past, so that the first check searches for the latest due tick.
    const plan: Plan = { when, deployedAt, cron, latest: undefined, next: new Date(deployedAt), settled: -Infinity };
    this.plans.set(s.id, plan);
    return plan;
  }

  private async fire(s: ActiveSchedule, now: Date): Promise<void> {
    try {
      const plan = this.plan(s);
      if (!plan || Number.isNaN(plan.deployedAt)) return;
      if (plan.next && plan.next.getTime() <= now.getTime()) {
        plan.latest = latestTick(plan.cron, plan.latest?.getTime() ?? plan.deployedAt, now) ?? plan.latest;
        plan.next = plan.cron.nextRun(new Date(Math.max(now.getTime(), plan.deployedAt)));
      }
      const tick = plan.latest;
      if (!tick || tick.getTime() <= plan.settled) return;
      const won = await this.o.store.schedules.claimTick(s.id, tick.toISOString());
      plan.settled = Math.max(plan.settled, tick.getTime());
      if (!won) return;
      const { deployedAt: _, ...stub } = s;
      const at = tick.toISOString();
      this.o.logger?.info({ stub: s.id, name: s.name, when: plan.when, tick: at }, "schedule fired");
      await this.o.put(stub, tick).catch((err: unknown) => {
        this.o.logger?.error({ err, stub: s.id, name: s.name, tick: at }, "cron runner: could not start the run; this tick is skipped");
      });
    } catch (err) {
      this.o.logger?.error({ err, stub: s.id, name: s.name }, "cron runner: schedule tick failed");
    }
  }
}
