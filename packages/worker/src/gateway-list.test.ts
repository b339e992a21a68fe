import { test } from "node:test";
import assert from "node:assert/strict";
import { GatewayRotation, parseGatewayUrls } from "./gateway-list.js";

test("gateway URLs: one, a comma list or an array; duplicates once; bad ones refused naming them", () => {
  assert.deepEqual(parseGatewayUrls("http://a:1994"), ["http://a:1994"]);
  assert.deepEqual(parseGatewayUrls(" http://a:1994, https://b:1994 ,http://a:1994"), ["http://a:1994", "https://b:1994"]);
  assert.deepEqual(parseGatewayUrls(["http://a:1", "http://b:2"]), ["http://a:1", "http://b:2"]);
  assert.throws(() => parseGatewayUrls(" , "), /no gateway URL/);
  assert.throws(() => parseGatewayUrls("http://a:1,a-host:1994"), /"a-host:1994" is not a URL|must start with http/);
  assert.throws(() => parseGatewayUrls("ftp://a"), /must start with http/);
});

test("rotation: a failed gateway is left for the next one at the minimum wait; backoff grows per full round", () => {
  const r = new GatewayRotation(["A", "B", "C"], 100, 1000);
  const half = () => 1; // no jitter: the upper end
  assert.equal(r.current, "A");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "B");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "C");
  assert.equal(r.failed(half), 100);
  assert.equal(r.current, "A");
  assert.equal(r.failed(half), 200, "the second round waits twice as long");
  for (let i = 0; i < 20; i++) r.failed(half);
  assert.equal(r.failed(half), 1000, "capped");
  r.connected();
  assert.equal(r.attempts, 0);
  assert.equal(r.failed(half), 100, "a welcome resets the backoff");
});

test("rotation with one URL: the old exponential backoff on the same gateway", () => {
  const r = new GatewayRotation(["A"], 250, 30_000);
  assert.deepEqual([1, 2, 3, 4].map(() => r.failed(() => 1)), [250, 500, 1000, 2000]);
  assert.equal(r.current, "A");
  assert.ok(r.failed(() => 0) >= 2000, "jitter keeps at least half");
});
