import assert from "node:assert/strict";
import { test } from "node:test";
import { targetUrl } from "./forward.js";

test("a forwarded call goes to the peer's origin whatever the request line names (absolute form, //host, odd paths)", () => {
  const peer = "http://10.0.0.12:1994";
  for (const [asked, path] of [
    ["/endpoint/echo?x=1", "/endpoint/echo?x=1"],
    ["http://169.254.169.254:80/endpoint/echo?x=1", "/endpoint/echo?x=1"],
    ["https://evil.example/endpoint/echo", "/endpoint/echo"],
    ["//evil.example/endpoint/echo", "/endpoint/echo"],
    ["/endpoint/../public/abc", "/public/abc"],
  ] as const) {
    const url = targetUrl(peer, asked);
    assert.equal(url.origin, "http://10.0.0.12:1994", asked);
    assert.equal(url.pathname + url.search, path, asked);
  }
  assert.equal(targetUrl("https://gw-b.internal:8443", "/function/f").href, "https://gw-b.internal:8443/function/f");
});

test("advertised URLs that reach whichever machine calls them are recognised (used only from the same machine)", async () => {
  const { isLoopbackUrl } = await import("../store/postgres/store.js");
  for (const url of ["http://127.0.0.1:1994", "http://localhost:1994", "http://LOCALHOST.:1994", "http://gw.localhost:1", "http://0.0.0.0:1994",
    "http://[::1]:1994", "http://[::]:1994", "http://[::ffff:127.0.0.1]:1994", "not a url"]) assert.equal(isLoopbackUrl(url), true, url);
  for (const url of ["http://10.0.0.12:1994", "https://gw-b.internal:8443", "http://[fd00::12]:1994"]) assert.equal(isLoopbackUrl(url), false, url);
});
