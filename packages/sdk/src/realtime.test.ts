/** realtime() and upgradeWebSocket(): an endpoint whose config says realtime and whose handler takes a socket. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { normalizeStubConfig, StubConfigError } from "@beta9/protocol";
import { realtime, upgradeWebSocket } from "./index.js";

describe("realtime", () => {
  it("is a frozen endpoint descriptor with realtime: true that the gateway keeps", () => {
    const echo = realtime({ name: "echo", concurrentRequests: 50 }, async () => undefined);
    assert.deepEqual([echo.kind, echo.name, echo.config], ["endpoint", "echo", { concurrentRequests: 50, realtime: true }]);
    assert.ok(Object.isFrozen(echo) && Object.isFrozen(echo.config));
    assert.equal(normalizeStubConfig("endpoint", echo.config).realtime, true);
    assert.equal(normalizeStubConfig("endpoint", {}).realtime, undefined, "other configs keep their hash");
    assert.throws(() => normalizeStubConfig("taskqueue", { realtime: true }), (err: Error) => err instanceof StubConfigError && /only endpoints take WebSockets/.test(err.message));
    assert.throws(() => normalizeStubConfig("endpoint", { realtime: true, webApp: true }), /a web app accepts WebSockets itself/);
  });

  it("refuses what is no handler, inputs, and JSON callers, saying what to do instead", () => {
    assert.throws(() => realtime({ name: "x" }, {} as never), /realtime\("x"\): the second argument must be a socket handler/);
    assert.throws(() => realtime({ name: "x", inputs: {} } as never, () => undefined), /inputs is for endpoints that take JSON/);
    const echo = realtime({ name: "x" }, () => undefined) as unknown as { remote(): unknown; map(): unknown };
    assert.throws(() => echo.remote(), /realtime\("x"\)\.remote\(\): a realtime endpoint takes WebSockets: connect to its URL/);
    assert.throws(() => echo.map(), /connect to its URL/);
  });

  it("upgradeWebSocket calls the runner's upgrade on the request, and says so when there is none", () => {
    assert.throws(() => upgradeWebSocket(new Request("http://x/")), /this request is not a WebSocket upgrade to a deployed web app/);
    const request = new Request("http://x/chat");
    const accepted = { socket: {} as never, response: new Response(null) };
    Object.defineProperty(request, Symbol.for("beta9.upgradeWebSocket"), { value: () => accepted });
    assert.equal(upgradeWebSocket(request), accepted);
  });
});
