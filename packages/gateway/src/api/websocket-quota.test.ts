/**
 * WebSocket counts: anonymous sockets (public stubs, pods, web apps and ports reached without a
 * token) have a budget of their own per target and a gateway-wide cap, so strangers cannot use up
 * the sockets a workspace's own clients need.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_QUOTAS } from "../quotas.js";
import { anonymousSocketCount, holdSocket, MAX_ANONYMOUS_SOCKETS, openSocketCount } from "./websocket-routes.js";

test("anonymous sockets to a public target never use up the workspace's own quota; each target and the gateway bound them", () => {
  const ctx = { store: {} as never, quotas: { ...DEFAULT_QUOTAS, webSockets: 3 } };
  const strangers = [1, 2, 3].map(() => holdSocket(ctx, "ws-a", "stub:public"));
  assert.ok(strangers.every((r) => r !== undefined));
  assert.equal(holdSocket(ctx, "ws-a", "stub:public"), undefined, "the public target's anonymous budget is spent");
  assert.equal(anonymousSocketCount(ctx, "ws-a", "stub:public"), 3);
  assert.equal(openSocketCount(ctx, "ws-a"), 0, "none of them counts against the workspace");
  const own = [1, 2, 3].map(() => holdSocket(ctx, "ws-a"));
  assert.ok(own.every((r) => r !== undefined), "the owner's clients still have the workspace's whole quota");
  assert.equal(holdSocket(ctx, "ws-a"), undefined);
  const otherTarget = holdSocket(ctx, "ws-a", "port:sb:8080");
  assert.ok(otherTarget, "another public target has a budget of its own");
  for (const release of [...strangers, ...own, otherTarget]) {
    release!();
    release!(); // twice: counted once
  }
  assert.equal(anonymousSocketCount(ctx, "ws-a", "stub:public"), 0);
  assert.equal(openSocketCount(ctx, "ws-a"), 0);
});

test("anonymous sockets are bounded gateway-wide, whatever the number of public targets", () => {
  const ctx = { store: {} as never, quotas: { ...DEFAULT_QUOTAS, webSockets: 10 } };
  const held: (() => void)[] = [];
  for (let i = 0; i < MAX_ANONYMOUS_SOCKETS; i++) {
    const release = holdSocket(ctx, `ws-${i % 7}`, `stub:${Math.floor(i / 10)}`);
    assert.ok(release, `socket ${i}`);
    held.push(release);
  }
  assert.equal(holdSocket(ctx, "ws-new", "stub:fresh"), undefined, "the gateway holds all the anonymous sockets it may");
  assert.ok(holdSocket(ctx, "ws-new"), "a token's socket is not affected");
  held.pop()!();
  assert.ok(holdSocket(ctx, "ws-new", "stub:fresh"), "room again once one closes");
});
