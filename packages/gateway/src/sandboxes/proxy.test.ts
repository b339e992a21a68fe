/** What crosses between a browser and a sandbox's exposed port, which is served from the API's own origin. */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import Fastify from "fastify";
import type { Dispatcher } from "undici";
import type { IncomingMessage } from "node:http";
import { exposedUrl, sandboxHostRewriter } from "./ports.js";
import { createServer } from "node:http";
import { dropDaemonPool, EXPOSED_PORT_CSP, forward, forwardedHeaders, hostOnlyCookie, relayAll } from "./proxy.js";

test("the sandbox's server never gets the caller's token or cookies", () => {
  const out = forwardedHeaders({ authorization: "Bearer b9_x", cookie: "session=1", accept: "text/html", connection: "keep-alive" }, "10.0.0.9");
  assert.deepEqual(out, { accept: "text/html", "x-forwarded-for": "10.0.0.9" });
});

test("responses lose cookies and service-worker scope and run sandboxed (opaque origin); other headers pass", async (t) => {
  const app = Fastify();
  t.after(() => app.close());
  app.get("/", (_req, reply) => relayAll(reply, {
    statusCode: 201,
    headers: {
      "set-cookie": ["sid=1; Path=/"], "service-worker-allowed": "/", "content-type": "text/html", "x-app": "yes",
      "content-security-policy": "default-src 'self'", connection: "close",
    },
    body: Readable.from(["<p>hi</p>"]),
  } as unknown as Dispatcher.ResponseData));
  const res = await app.inject({ method: "GET", url: "/" });
  assert.equal(res.statusCode, 201);
  assert.equal(res.body, "<p>hi</p>");
  assert.equal(res.headers["set-cookie"], undefined);
  assert.equal(res.headers["service-worker-allowed"], undefined);
  assert.equal(res.headers["x-app"], "yes");
  assert.deepEqual(res.headers["content-security-policy"], ["default-src 'self'", EXPOSED_PORT_CSP], "the app's policy is kept; ours narrows it");
  assert.ok(!EXPOSED_PORT_CSP.includes("allow-same-origin"));
});

test("a port's own origin (<id>-<port>.<host>): every path is the port's, cookies and service workers are its own, no sandboxing CSP", async (t) => {
  const id = "0f8fad5b-d9cb-469f-a165-70867728950e";
  const req = (host: string | undefined, url: string) => ({ url, headers: host === undefined ? {} : { host } }) as unknown as IncomingMessage;
  const rewrite = sandboxHostRewriter("sandboxes.example.com:8443");
  assert.equal(rewrite(req(`${id}-8080.sandboxes.example.com`, "/api/v1/health?x=1")), `/sandbox/${id}/port/8080/api/v1/health?x=1`);
  assert.equal(rewrite(req(`${id.toUpperCase()}-3000.Sandboxes.Example.com:8443`, "/")), `/sandbox/${id}/port/3000/`);
  for (const host of ["127.0.0.1:1994", "sandboxes.example.com", `x${id}-8080.sandboxes.example.com`, `${id}.sandboxes.example.com`,
    `${id}-8080.evil.example`, `${id}-8080.sandboxes.example.com.evil.example`, `a.${id}-8080.sandboxes.example.com`, undefined]) {
    assert.equal(rewrite(req(host, "/api/v1/health")), "/api/v1/health", String(host));
  }
  assert.equal(hostOnlyCookie("sid=1; Domain=sandboxes.example.com; Path=/; HttpOnly"), "sid=1; Path=/; HttpOnly");
  assert.deepEqual(forwardedHeaders({ authorization: "Bearer b9_x", cookie: "s=1" }, "10.0.0.9", { keepCookies: true }), { cookie: "s=1", "x-forwarded-for": "10.0.0.9" });
  assert.equal(exposedUrl("http://127.0.0.1:1994", id, 8080), `http://127.0.0.1:1994/sandbox/${id}/port/8080/`);
  assert.equal(exposedUrl("https://gw.example.com", id, 8080, "sbx.example.com"), `https://${id}-8080.sbx.example.com/`);
  const app = Fastify();
  t.after(() => app.close());
  app.get("/", (_req, reply) => relayAll(reply, {
    statusCode: 200, headers: { "set-cookie": ["sid=1; Domain=example.com; Path=/"], "service-worker-allowed": "/", connection: "close" }, body: Readable.from(["ok"]),
  } as unknown as Dispatcher.ResponseData, { ownOrigin: true }));
  const res = await app.inject({ method: "GET", url: "/" });
  assert.deepEqual(res.headers["set-cookie"], ["sid=1; Path=/"]);
  assert.equal(res.headers["service-worker-allowed"], "/");
  assert.equal(res.headers["content-security-policy"], undefined);
});

test("a daemon's kept-alive sockets are per sandbox address and dropped with it: the next sandbox at that address gets new connections", async (t) => {
  // A sandbox's address is reused by the next one on its worker; a socket kept from the old one
  // would reach the new container, whose kernel resets it (ECONNRESET on its first call).
  const seen: string[] = [];
  const server = createServer((req, res) => res.end(`${req.socket.remotePort}`));
  server.on("connection", (socket) => seen.push(String(socket.remotePort)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  t.after(() => dropDaemonPool(origin));
  const call = async () => {
    const text = await (await forward({ url: `${origin}/health`, secret: "s" }, { method: "GET" })).body.text();
    await new Promise((r) => setTimeout(r, 20)); // the socket goes back to its pool
    return text;
  };
  const first = await call();
  assert.equal(await call(), first, "kept alive while the sandbox lives");
  dropDaemonPool(origin); // its sandbox ended
  const next = await call();
  assert.notEqual(next, first, "a new connection for whatever runs at the address now");
  assert.equal(seen.length, 2);
});
