/**
 * Streaming and web apps end to end on real parts: a gateway, two runc workers (one reached
 * directly, one only through its tunnel, as a worker behind NAT), code deployed with the `beta9`
 * CLI. A slow client pauses the handler (backpressure), a client that leaves aborts ctx.signal,
 * SSE arrives whole and in order; a webApp gets its routes, query and a 5 MB body; a stream from a
 * task queue or function is a clear error. Skipped (with the reason) where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Client } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { captureHostState } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-stream-e2e-"));
const hostBefore = captureHostState();
const CHUNKS = 2000;
const CHUNK_CHARS = 65_536;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const APP = `
import { createHash } from "node:crypto";
import { endpoint, fn, Image, taskQueue, webApp } from ${JSON.stringify(sdk)};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A stream and a status call share one container (4 slots), so the status shows the stream's progress.
const options = (name, extra = {}) => ({
  name, image: Image.scratch(), cpu: 1, memory: "256Mi", concurrentRequests: 4, autoscaler: { maxContainers: 1, tasksPerContainer: 4 }, ...extra,
});
const state = { produced: 0, aborted: null };
const streamer = async (input, ctx) => {
  if (input.status) return state;
  if (input.events) return (async function* () { for (let i = 0; i < input.events; i++) yield { i, token: "t" + i }; })();
  if (input.forever) {
    state.aborted = null;
    return (async function* () {
      try { for (let i = 0; ; i++) { yield "tick " + i; await sleep(5); } }
      finally { state.aborted = { signal: ctx.signal.aborted }; }
    })();
  }
  state.produced = 0;
  return (async function* () {
    const chunk = "x".repeat(${CHUNK_CHARS});
    for (let i = 0; i < ${CHUNKS}; i++) { state.produced = i + 1; yield chunk; }
  })();
};
export const direct = endpoint(options("direct"), streamer);
// A 1 s task timeout: the time to the first item and each gap between items, never the stream's length.
export const paced = endpoint(options("paced", { taskPolicy: { timeout: 1 } }), async ({ items, gapMs, stallMs }) => (async function* () {
  for (let i = 0; i < items; i++) { yield "item " + i; await sleep(gapMs); }
  await sleep(stallMs);
  yield "after the stall";
})());
export const tunnelled = endpoint(options("tunnelled", { pool: "tun" }), streamer);

const routes = async (request) => {
  const url = new URL(request.url);
  if (request.method === "GET" && url.pathname === "/") return new Response("home");
  const user = /^\\/users\\/([^/]+)$/.exec(url.pathname);
  if (user && request.method === "GET") {
    return Response.json({ id: decodeURIComponent(user[1]), q: url.searchParams.get("q"), prefix: request.headers.get("x-forwarded-prefix"), auth: request.headers.get("authorization") });
  }
  if (url.pathname === "/upload" && request.method === "POST") {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of request.body) { hash.update(chunk); bytes += chunk.length; }
    return Response.json({ sha256: hash.digest("hex"), bytes });
  }
  if (url.pathname === "/broken") return { not: "a Response" };
  return new Response("no route " + url.pathname, { status: 404 });
};
export const site = webApp(options("site"), routes);
export const open = webApp(options("open-site", { authorized: false }), { fetch: routes });

export const queue = taskQueue(options("stream-queue", { taskPolicy: { maxRetries: 0 } }), async function* () { yield 1; });
export const func = fn(options("stream-fn", { taskPolicy: { maxRetries: 0 } }), async () => (async function* () { yield 1; })());
`;

function beta9(gateway: RunningGateway, key: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

/** A request on a connection of its own; resolves with the response, unread. */
function open(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: init.method ?? "GET", headers: init.headers ?? {}, agent: false }, resolve);
    req.on("error", reject);
    req.end(init.body);
  });
}

async function text(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Polls until `probe` gives the same value `times` times in a row (the pipeline stopped moving). */
async function settled(probe: () => Promise<number>, times = 5): Promise<number> {
  let last = -1;
  let same = 0;
  for (;;) {
    const value = await probe();
    same = value === last ? same + 1 : 0;
    last = value;
    if (same >= times) return value;
    await sleep(100);
  }
}

describe("streaming and web apps end to end (gateway + runc workers + CLI)", { skip }, () => {
  let gateway: RunningGateway;
  let client: Client;
  let key: string;
  const workers: StartedWorker[] = [];
  const stubs: Record<string, string> = {};
  let auth: Record<string, string>;

  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    key = gateway.bootstrap!.token.key;
    auth = { authorization: `Bearer ${key}` };
    client = new Client({ gateway: gateway.url, token: key });
    for (const [id, pool, subnet, reachable] of [["st-direct", "default", "10.219.230.0/24", true], ["st-tun", "tun", "10.219.231.0/24", false]] as const) {
      const worker = await startWorker({
        gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, id), logger: pino({ level: "silent" }),
        runtime: "runc", name: id.replace("-", "").slice(0, 8), subnet, workerId: id, pool, reachable,
      });
      workers.push(worker);
      await worker.connected;
    }
    const root = join(dir, "app");
    mkdirSync(root);
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(root, "app.ts"), APP);
    for (const name of ["direct", "tunnelled", "paced", "site", "open", "queue", "func"]) {
      const deployed = await beta9(gateway, key, ["deploy", `${join(root, "app.ts")}:${name}`, "--json", "-q"]);
      assert.equal(deployed.code, 0, deployed.stderr);
      const d = JSON.parse(deployed.stdout) as { name: string; stubId: string; url: string };
      stubs[name] = d.stubId;
      if (name === "site") assert.equal(d.url, `${gateway.url}/endpoint/site/v1/`, "a web app's URL is its root, with a slash");
    }
  });

  after(async () => {
    await client?.close();
    for (const w of workers) await w.close(1000);
    await gateway?.close();
  });

  const call = (name: string, input: unknown, headers: Record<string, string> = {}) =>
    open(`${gateway.url}/endpoint/${name}`, { method: "POST", headers: { ...auth, "content-type": "application/json", ...headers }, body: JSON.stringify(input) });
  const status = async (name: string) => JSON.parse(await text(await call(name, { status: true }))) as { produced: number; aborted: { signal: boolean } | null };

  for (const name of ["direct", "tunnelled"]) {
    test(`${name}: a client that does not read pauses the handler; reading on gets every byte`, async () => {
      const res = await call(name, {});
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
      res.pause();
      const produced = await settled(async () => (await status(name)).produced);
      process.stdout.write(`# ${name}: paused after ${produced} of ${CHUNKS} chunks of ${CHUNK_CHARS} chars\n`);
      assert.ok(produced < CHUNKS, `the handler made ${produced} of ${CHUNKS} chunks while the client read nothing`);
      let bytes = 0;
      for await (const chunk of res) bytes += (chunk as Buffer).length;
      assert.equal(bytes, CHUNKS * (CHUNK_CHARS + "data: \n\n".length));
      assert.equal((await status(name)).produced, CHUNKS);
      if (name === "tunnelled") {
        const [container] = (await client.listContainers({ active: true })).filter((c) => c.stubId === stubs.tunnelled);
        assert.equal(container?.ports["8000"]?.host, "127.0.0.1", "the gateway reached this container through the worker's tunnel");
      }
    });

    test(`${name}: a client that goes away aborts the handler's ctx.signal`, async () => {
      const res = await call(name, { forever: true });
      let seen = "";
      for await (const chunk of res) {
        seen += String(chunk);
        if (seen.includes("tick 3")) break; // leaving the loop destroys the response and its connection
      }
      let aborted = (await status(name)).aborted;
      while (!aborted) {
        await sleep(20);
        aborted = (await status(name)).aborted;
      }
      assert.deepEqual(aborted, { signal: true });
    });

    test(`${name}: SSE events arrive every one, in order; NDJSON when Accept asks`, async () => {
      const sse = await text(await call(name, { events: 1000 }));
      const events = sse.split("\n\n").filter(Boolean).map((e) => JSON.parse(e.replace(/^data: /, "")) as { i: number; token: string });
      assert.deepEqual(events.map((e) => e.i), [...Array(1000).keys()]);
      assert.equal(events[999]!.token, "t999");
      const nd = await call(name, { events: 3 }, { accept: "application/x-ndjson" });
      assert.equal(nd.headers["content-type"], "application/x-ndjson");
      assert.deepEqual((await text(nd)).trim().split("\n").map((l) => JSON.parse(l)), [{ i: 0, token: "t0" }, { i: 1, token: "t1" }, { i: 2, token: "t2" }]);
    });
  }

  test("the task timeout bounds each gap in a stream, not its length: 3 s of items 100 ms apart pass a 1 s timeout, a 2.5 s stall is cut", async () => {
    const whole = await text(await call("paced", { items: 30, gapMs: 100, stallMs: 0 }));
    assert.equal(whole.split("\n\n").filter(Boolean).length, 31);
    const res = await call("paced", { items: 2, gapMs: 0, stallMs: 2500 });
    let seen = "";
    await assert.rejects(async () => {
      for await (const chunk of res) seen += String(chunk);
    }, /aborted|ECONNRESET|terminated/);
    assert.equal(seen, "data: item 0\n\ndata: item 1\n\n", "what came before the stall arrived; nothing after");
  });

  test("a webApp: its root, routes with path params and query, versioned URLs, a 5 MB upload, a public app with the caller's Authorization", async () => {
    const get = (path: string, headers: Record<string, string> = auth) => open(`${gateway.url}${path}`, { headers });
    const home = await get("/endpoint/site/");
    assert.deepEqual([home.statusCode, await text(home)], [200, "home"]);
    const bare = await get("/endpoint/site?x=1");
    assert.deepEqual([bare.statusCode, bare.headers.location], [308, "/endpoint/site/?x=1"]);
    await text(bare);
    const user = await get("/endpoint/site/users/a%20b?q=cats");
    assert.deepEqual(JSON.parse(await text(user)), { id: "a b", q: "cats", prefix: "/endpoint/site", auth: null });
    assert.equal(JSON.parse(await text(await get("/endpoint/site/v1/users/7"))).id, "7");
    assert.equal(JSON.parse(await text(await get(`/endpoint/id/${stubs.site}/users/8`))).id, "8");
    const missing = await get("/endpoint/site/nowhere");
    assert.deepEqual([missing.statusCode, await text(missing)], [404, "no route /nowhere"]);
    const body = randomBytes(5 * 1024 * 1024);
    const upload = await open(`${gateway.url}/endpoint/site/upload`, { method: "POST", headers: { ...auth, "content-type": "application/octet-stream" }, body });
    assert.deepEqual(JSON.parse(await text(upload)), { sha256: createHash("sha256").update(body).digest("hex"), bytes: body.length });
    const pub = await get(`/public/${stubs.open}/users/9`, { authorization: "Bearer the-apps-own-token" });
    assert.deepEqual(JSON.parse(await text(pub)), { id: "9", q: null, prefix: `/public/${stubs.open}`, auth: "Bearer the-apps-own-token" });
    // A beta9 token sent to a public app is not handed to it (a client configured for this host would leak it).
    const leaked = await get(`/public/${stubs.open}/users/9`, auth);
    assert.equal(JSON.parse(await text(leaked)).auth, null);
    assert.equal((await get("/endpoint/site/", {})).statusCode, 401, "a token-protected app needs the gateway's token");
  });

  test("bad input: a webApp returning no Response is 502 WEBAPP_BAD_RESPONSE; a path on a plain endpoint is a CONFLICT; a stream from a task queue or function is a clear error", async () => {
    const broken = await open(`${gateway.url}/endpoint/site/broken`, { headers: auth });
    assert.equal(broken.statusCode, 502);
    const { error } = JSON.parse(await text(broken)) as { error: { code: string; message: string } };
    assert.equal(error.code, "WEBAPP_BAD_RESPONSE");
    assert.match(error.message, /answered GET \/broken with an object \(Object\); return a Response/);
    const notApp = await open(`${gateway.url}/endpoint/direct/users/1`, { headers: auth });
    assert.equal(notApp.statusCode, 409);
    assert.match(JSON.parse(await text(notApp)).error.message, /direct is an endpoint, not a web app/);
    const put = await client.putTask("stream-queue", {});
    let task = await client.getTask(put.id);
    while (!["COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"].includes(task.status)) {
      await sleep(50);
      task = await client.getTask(put.id);
    }
    assert.equal(task.status, "ERROR");
    assert.match(String(task.error), /taskQueue\(\) "stream-queue" returned an async iterable: only endpoint\(\) handlers stream \(its tasks store the result as JSON\)/);
    await assert.rejects(client.callFunction({ name: "stream-fn" }, {}), (err: Error & { code?: string }) =>
      err.code === "HANDLER_ERROR" && /fn\(\) "stream-fn" returned an async iterable: only endpoint\(\) handlers stream/.test(err.message));
  });
});

// The temp dir goes whatever happened (skipped, failed, or the host check below failing).
after(() => rmSync(dir, { recursive: true, force: true }));

test("after the streaming tests, the host holds no container, mount, netns or veth of theirs", { skip }, () => {
  const now = captureHostState();
  const ours = (xs: string[]) => xs.filter((x) => x.includes("stdirect") || x.includes("sttun") || x.includes(dir));
  assert.deepEqual(
    { netns: ours(now.netns), veths: ours(now.veths), mounts: ours(now.overlayMounts), cgroups: ours(now.cgroupDirs) },
    { netns: ours(hostBefore.netns), veths: ours(hostBefore.veths), mounts: ours(hostBefore.overlayMounts), cgroups: ours(hostBefore.cgroupDirs) },
  );
});
