/**
 * `webApp()`: a whole HTTP app as one workload. The app is any fetch-style handler,
 * `(request: Request, ctx) => Response | Promise<Response>` (a Hono app's `app.fetch`, or the app
 * itself: anything with a `fetch` method), served with every method and path under its endpoint
 * URL with a slash: `/endpoint/<name>/…` (and `/latest/…`, `/vN/…`, `/endpoint/id/<stub>/…`,
 * `/public/<stub>/…` when `authorized: false`, `/serve/<session>/…` under `beta9 serve`).
 *
 * It is an endpoint underneath (stub config `webApp: true`): same options, scaling on requests in
 * flight, `beta9 deploy FILE:EXPORT`. The app sees its own path and query, the caller's headers
 * (without the gateway's token and cookies; a public app gets the caller's Authorization) and the
 * body, streamed; its Response is streamed back. `ctx` is the second argument (Hono: `c.env`):
 * `ctx.signal` aborts when the caller goes away.
 *
 * @example
 * import { Hono } from "hono";
 * import { webApp } from "beta9";
 * const app = new Hono().get("/users/:id", (c) => c.json({ id: c.req.param("id") }));
 * export const api = webApp({ name: "api", cpu: 1, memory: "256Mi" }, app.fetch);
 */
import type { Handler, BaseOptions, Context, Workload } from "./workloads.js";
import { define, wrapperModule } from "./workloads.js";

wrapperModule(import.meta.url);

/** A fetch-style app: a Request in, a Response out. */
export type FetchHandler<S = unknown> = (request: Request, ctx: Context<S>) => Response | Promise<Response>;

export interface WebAppOptions<S = unknown> extends BaseOptions {
  /** Runs once per container before any request; its value is `ctx.onStartValue`. */
  onStart?: () => S | Promise<S>;
}

/** A web app as `webApp()` returns it: deployable and servable; called over HTTP, not with remote(). */
export type WebApp<S = unknown> = Omit<Workload<Request, Response, S>, "remote" | "map" | "put">;

/**
 * Wraps a fetch handler (or an object with a `fetch` method) as a web app workload.
 *
 * @example
 * export const hello = webApp({ name: "hello" }, (request) => new Response(`hi from ${new URL(request.url).pathname}`));
 */
export function webApp<S = undefined>(options: WebAppOptions<S>, app: FetchHandler<S> | { fetch: FetchHandler<S> }): WebApp<S> {
  const name = typeof options === "object" && options !== null ? options.name : undefined;
  const where = `webApp(${name === undefined ? "" : JSON.stringify(name)})`;
  const fetch: FetchHandler<S> | undefined = typeof app === "function"
    ? app
    : typeof app === "object" && app !== null && typeof app.fetch === "function" ? (request, ctx) => app.fetch(request, ctx) : undefined;
  if (!fetch) throw new TypeError(`${where}: the second argument must be a fetch handler, (request) => Response, e.g. a Hono app or its app.fetch`);
  if (typeof options === "object" && options !== null && "inputs" in options) {
    throw new TypeError(`${where}: inputs is for endpoints that take JSON; a web app checks its own requests`);
  }
  const workload = define("endpoint", options as BaseOptions, fetch as Handler<unknown, unknown, unknown>, { webApp: true });
  const refuse = (what: string) => () => {
    throw new TypeError(`${where}.${what}(): a web app answers HTTP requests: fetch its URL (beta9 deploy prints it)`);
  };
  return Object.freeze({ ...workload, remote: refuse("remote"), map: refuse("map"), put: refuse("put") }) as WebApp<S>;
}
