/** webApp(): an endpoint whose config says webApp, whose handler is the app's fetch, with no JSON callers. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { normalizeStubConfig, type InvocationContext } from "@beta9/protocol";
import { webApp } from "./index.js";

const ctx: InvocationContext = { taskId: "t1", containerId: "c1", retries: 0, signal: new AbortController().signal, onStartValue: undefined };

describe("webApp", () => {
  it("is a frozen endpoint descriptor with webApp: true whose handler answers the app's Response", async () => {
    const app = webApp({ name: "site", cpu: 1 }, (request) => new Response(`at ${new URL(request.url).pathname}`));
    assert.deepEqual([app.kind, app.name, app.config], ["endpoint", "site", { cpu: 1, webApp: true }]);
    assert.ok(Object.isFrozen(app) && Object.isFrozen(app.config));
    const res = (await app.handler(new Request("http://x/users/1"), ctx)) as Response;
    assert.equal(await res.text(), "at /users/1");
    assert.equal(normalizeStubConfig("endpoint", app.config).webApp, true, "the gateway keeps the flag");
  });

  it("takes an object with a fetch method (a Hono app) and hands it the context as its second argument", async () => {
    const app = webApp({ name: "hono-like" }, { fetch: (_request: Request, env: InvocationContext) => Response.json({ task: env.taskId }) });
    assert.deepEqual(await ((await app.handler(new Request("http://x/"), ctx)) as Response).json(), { task: "t1" });
  });

  it("refuses what is no app, inputs, and JSON callers, saying what to do instead", () => {
    assert.throws(() => webApp({ name: "x" }, {} as never), /webApp\("x"\): the second argument must be a fetch handler/);
    assert.throws(() => webApp({ name: "x", inputs: {} } as never, () => new Response()), /inputs is for endpoints that take JSON/);
    assert.throws(() => webApp({ name: "Bad Name" }, () => new Response()), /name "Bad Name" is not valid/);
    const app = webApp({ name: "x" }, () => new Response()) as unknown as { remote(): unknown; put(): unknown };
    assert.throws(() => app.remote(), /webApp\("x"\)\.remote\(\): a web app answers HTTP requests: fetch its URL/);
    assert.throws(() => app.put(), /fetch its URL/);
  });

  it("knows the file that called it, as endpoint() does (deploy() gets as far as needing a gateway)", async () => {
    const app = webApp({ name: "from-code" }, () => new Response());
    const saved = { gateway: process.env.BETA9_GATEWAY, config: process.env.BETA9_CONFIG_DIR };
    const emptyConfig = mkdtempSync(join(tmpdir(), "beta9-noconfig-"));
    delete process.env.BETA9_GATEWAY;
    process.env.BETA9_CONFIG_DIR = emptyConfig;
    try {
      await assert.rejects(app.deploy(), /set BETA9_GATEWAY and BETA9_TOKEN/);
    } finally {
      if (saved.gateway !== undefined) process.env.BETA9_GATEWAY = saved.gateway;
      if (saved.config === undefined) delete process.env.BETA9_CONFIG_DIR;
      else process.env.BETA9_CONFIG_DIR = saved.config;
      rmSync(emptyConfig, { recursive: true, force: true });
    }
  });

  it("the gateway refuses webApp on anything but an endpoint, and inputs beside it", () => {
    assert.throws(() => normalizeStubConfig("taskqueue", { webApp: true }), /config\.webApp: only endpoints can be web apps/);
    assert.throws(() => normalizeStubConfig("endpoint", { webApp: true, inputs: { type: "object", properties: {} } }), /config\.inputs: a web app takes HTTP requests/);
    assert.equal("webApp" in normalizeStubConfig("endpoint", {}), false, "other configs keep their hash");
  });
});
