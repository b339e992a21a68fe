/**
 * Task attempts to a runner, several per request: the attempts that start on one container in
 * the same event-loop turn (claimed in one group commit, or put in one) go out as one
 * `POST /invoke-batch` (runner-protocol.ts), and each resolves from its own NDJSON line as its
 * task ends. One HTTP exchange per turn instead of one per task, on both sides. Each attempt
 * keeps its own abort: it settles at once (the caller sends /cancel/:taskId for the handler); when
 * every attempt of a request was aborted, the request is closed. A task alone in its turn, or with
 * a large input, is a plain `POST /invoke`; a runner without the batch route (404) gets one
 * `POST /invoke` per task from then on.
 */
import type { Dispatcher } from "undici";
import { TASK_ID_HEADER, TASK_RETRIES_HEADER } from "@beta9/protocol";

/** What the runner answered for one task (as /invoke would: status and parsed body). */
export interface RunnerAnswer {
  statusCode: number;
  body: { result?: unknown; error?: { message?: string; stack?: unknown } };
}

/** Input per batch request, in JSON characters (at most 3 bytes each: well under the runner's 32 MiB body cap). */
const BATCH_CHARS = 4 * 1024 * 1024;

interface Item {
  taskId: string;
  inputJson: string;
  retries: number;
  signal: AbortSignal;
  resolve: (answer: RunnerAnswer) => void;
  reject: (err: unknown) => void;
}

export class RunnerBatches {
  private readonly queues = new Map<Dispatcher, Item[]>();
  private readonly unbatched = new WeakSet<Dispatcher>();

  /** Runs one task on the runner behind `runner`; rejects when the exchange fails or `signal` aborts. */
  call(runner: Dispatcher, taskId: string, inputJson: string, signal: AbortSignal, retries = 0): Promise<RunnerAnswer> {
    if (this.unbatched.has(runner) || inputJson.length > BATCH_CHARS) return single(runner, taskId, inputJson, signal, retries);
    return new Promise<RunnerAnswer>((resolve, reject) => {
      let queue = this.queues.get(runner);
      if (!queue) {
        this.queues.set(runner, (queue = []));
        // Once the current callbacks and their promise chains are done: the attempts that one group
        // commit (or one runner answer) started all join, and they go out in this turn, not the next.
        process.nextTick(() => {
          const items = this.queues.get(runner) ?? [];
          this.queues.delete(runner);
          // Requests of at most BATCH_CHARS of input (the runner caps a body at 32 MiB); one task alone is a plain /invoke.
          let from = 0;
          while (from < items.length) {
            let to = from;
            for (let chars = 0; to < items.length && (to === from || chars + items[to]!.inputJson.length <= BATCH_CHARS); to++) chars += items[to]!.inputJson.length;
            if (to - from === 1) {
              const item = items[from]!;
              single(runner, item.taskId, item.inputJson, item.signal, item.retries).then(item.resolve, item.reject);
            } else void this.send(runner, items.slice(from, to));
            from = to;
          }
        });
      }
      queue.push({ taskId, inputJson, retries, signal, resolve, reject });
    });
  }

  private async send(runner: Dispatcher, items: Item[]): Promise<void> {
    const pending = new Map<string, Item>();
    const request = new AbortController();
    const listeners: (() => void)[] = [];
    for (const item of items) {
      if (item.signal.aborted) {
        item.reject(item.signal.reason);
        continue;
      }
      pending.set(item.taskId, item);
      const onAbort = () => {
        if (!pending.delete(item.taskId)) return;
        item.reject(item.signal.reason);
        if (pending.size === 0) request.abort();
      };
      item.signal.addEventListener("abort", onAbort, { once: true });
      listeners.push(() => item.signal.removeEventListener("abort", onAbort));
    }
    if (pending.size === 0) return;
    const settle = (id: string, answer: RunnerAnswer) => {
      const item = pending.get(id);
      if (!item) return;
      pending.delete(id);
      item.resolve(answer);
    };
    try {
      const body = `{"tasks":[${[...pending.values()].map((i) => `{"id":${JSON.stringify(i.taskId)},"retries":${i.retries},"input":${i.inputJson}}`).join(",")}]}`;
      const res = await runner.request({
        path: "/invoke-batch", method: "POST", headers: { "content-type": "application/json" }, body,
        signal: request.signal, headersTimeout: 0, bodyTimeout: 0,
      });
      if (res.statusCode === 404 || res.statusCode === 405) {
        // An older runner: one request per task from now on.
        await res.body.dump();
        this.unbatched.add(runner);
        for (const item of [...pending.values()]) {
          pending.delete(item.taskId);
          single(runner, item.taskId, item.inputJson, item.signal, item.retries).then(item.resolve, item.reject);
        }
        return;
      }
      if (res.statusCode !== 200) {
        const answer = { statusCode: res.statusCode, body: (await res.body.json().catch(() => ({}))) as RunnerAnswer["body"] };
        for (const id of [...pending.keys()]) settle(id, answer);
        return;
      }
      res.body.setEncoding("utf8");
      let buffered = "";
      for await (const chunk of res.body as AsyncIterable<string>) {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffered.slice(0, nl)) as { id: string; status: number; body: RunnerAnswer["body"] };
          buffered = buffered.slice(nl + 1);
          settle(line.id, { statusCode: line.status, body: line.body ?? {} });
        }
        if (pending.size === 0) break;
      }
      const left = new Error("the runner ended the batch without answering this task");
      for (const item of pending.values()) item.reject(left);
    } catch (err) {
      for (const item of pending.values()) item.reject(err);
    } finally {
      pending.clear();
      for (const remove of listeners) remove();
    }
  }
}

/** One task, one `POST /invoke`. */
async function single(runner: Dispatcher, taskId: string, inputJson: string, signal: AbortSignal, retries: number): Promise<RunnerAnswer> {
  const res = await runner.request({
    path: "/invoke", method: "POST",
    headers: { "content-type": "application/json", [TASK_ID_HEADER]: taskId, [TASK_RETRIES_HEADER]: String(retries) },
    body: `{"input":${inputJson}}`, signal, headersTimeout: 0, bodyTimeout: 0,
  });
  return { statusCode: res.statusCode, body: (await res.body.json().catch(() => ({}))) as RunnerAnswer["body"] };
}
