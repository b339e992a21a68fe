/** What crosses between a browser and a sandbox's exposed port, which is served from the API's own origin. */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import Fastify from "fastify";
import type { Dispatcher } from "undici";
import { EXPOSED_PORT_CSP, forwardedHeaders, relayAll } from "./proxy.js";

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
