/**
 * Task attempts by task id, so that a task's handler runs once even when the gateway that sent
 * it dies mid-attempt. The gateway that takes the task over sends it again to the same container
 * (the store remembers it), and here:
 *
 * - an attempt whose caller went away runs on (an "orphan"); it is aborted only if nobody asks
 *   for it again within `orphanGraceMs` (a deliberate stop comes as /cancel, never as a hang-up);
 * - a new attempt of a task that is still running joins it: one handler run, its answer to both;
 * - a success stays answerable for `keepMs` (within `keepBytes`), so an attempt whose answer was
 *   sent but never recorded (its gateway died in between) is answered again, not run again.
 *
 * Only successes of runs that were not aborted are kept: after a handler error, a timeout or a
 * cancel, the gateway's next attempt is meant to run the handler again.
 */
import type { Invoker, Reply } from "./invoker.js";

export interface TaskAttemptsOptions {
  /** How long an orphaned attempt runs on, waiting to be asked for again, before it is aborted. */
  orphanGraceMs: number;
  /** How long a success stays answerable. */
  keepMs: number;
  /** The most bytes of kept answers; the oldest go first. */
  keepBytes: number;
}

export const DEFAULT_TASK_ATTEMPTS: TaskAttemptsOptions = { orphanGraceMs: 120_000, keepMs: 120_000, keepBytes: 16 * 1024 * 1024 };

interface Live {
  reply: Promise<Reply>;
  controller: AbortController;
  callers: number;
  orphaned: NodeJS.Timeout | undefined;
}

export class TaskAttempts {
  private readonly live = new Map<string, Live>();
  /** Successes in the order they ended (Map keeps insertion order: the first is the oldest). */
  private readonly kept = new Map<string, { reply: Reply; at: number }>();
  private keptBytes = 0;

  constructor(private readonly invoker: Invoker, private readonly options: TaskAttemptsOptions = DEFAULT_TASK_ATTEMPTS) {}

  /**
   * The answer to one attempt of task `id`: what was kept, the running attempt's, or a new run's.
   * `caller` aborts when whoever asked went away. Undefined when every slot is taken (BUSY).
   */
  run(id: string, retries: number, input: unknown, caller: AbortSignal): Promise<Reply> | undefined {
    const kept = this.kept.get(id);
    if (kept && Date.now() - kept.at <= this.options.keepMs) return Promise.resolve(kept.reply);
    let live = this.live.get(id);
    if (!live || live.controller.signal.aborted) {
      const invocation = this.invoker.begin(id, retries);
      if (!invocation) return undefined;
      const started: Live = {
        controller: invocation.controller, callers: 0, orphaned: undefined,
        reply: this.invoker.run(invocation, input).then((reply) => {
          // A cancelled run's answer (a handler may return normally once aborted) is not the task's.
          if (reply.status === 200 && !invocation.controller.signal.aborted) this.keep(id, reply);
          return reply;
        }).finally(() => {
          clearTimeout(started.orphaned);
          if (this.live.get(id) === started) this.live.delete(id);
          invocation.end();
        }),
      };
      this.live.set(id, (live = started));
    }
    this.attach(live, caller);
    return live.reply;
  }

  private attach(live: Live, caller: AbortSignal): void {
    live.callers++;
    clearTimeout(live.orphaned);
    live.orphaned = undefined;
    const left = (): void => {
      if (--live.callers > 0) return;
      live.orphaned = setTimeout(() => {
        live.controller.abort(new DOMException(`nobody asked for this task again within ${this.options.orphanGraceMs} ms of its caller going away`, "AbortError"));
      }, this.options.orphanGraceMs);
      live.orphaned.unref();
    };
    if (caller.aborted) return left();
    caller.addEventListener("abort", left, { once: true });
    void live.reply.finally(() => caller.removeEventListener("abort", left));
  }

  private keep(id: string, reply: Reply): void {
    const size = reply.json.length + id.length;
    if (size > this.options.keepBytes) return;
    this.drop(id);
    const now = Date.now();
    this.kept.set(id, { reply, at: now });
    this.keptBytes += size;
    for (const [oldId, entry] of this.kept) {
      if (this.keptBytes <= this.options.keepBytes && now - entry.at <= this.options.keepMs) break;
      this.drop(oldId);
    }
  }

  private drop(id: string): void {
    const entry = this.kept.get(id);
    if (!entry) return;
    this.kept.delete(id);
    this.keptBytes -= entry.reply.json.length + id.length;
  }
}
