import assert from "node:assert/strict";
import { test } from "node:test";
import { cidrContains, egressPolicy, EgressRuleError, formatEgressRule, parseEgressRule } from "./egress.js";
import { hashStubConfig, normalizeStubConfig, StubConfigError } from "./stub-config.js";

test("egress rules: CIDRs, bare addresses, ports and ranges parse to one canonical form", () => {
  assert.deepEqual(parseEgressRule("10.0.0.0/8"), { cidr: "10.0.0.0/8" });
  assert.deepEqual(parseEgressRule("203.0.113.7"), { cidr: "203.0.113.7/32" });
  assert.deepEqual(parseEgressRule("203.0.113.7:443"), { cidr: "203.0.113.7/32", ports: [443, 443] });
  assert.deepEqual(parseEgressRule("0.0.0.0/0:8000-8100"), { cidr: "0.0.0.0/0", ports: [8000, 8100] });
  assert.equal(formatEgressRule(parseEgressRule("203.0.113.7:443")), "203.0.113.7/32:443");
  assert.equal(formatEgressRule(parseEgressRule("0.0.0.0/0:8000-8100")), "0.0.0.0/0:8000-8100");
});

test("egress rules: each bad entry is refused with what to fix", () => {
  const refused: [string, RegExp][] = [
    ["10.1.2.3/8", /did you mean 10\.0\.0\.0\/8/],
    ["300.1.1.1", /not an IPv4 address/],
    ["1.2.3.4/33", /prefix length/],
    ["1.2.3.4:0", /ports must be/],
    ["1.2.3.4:90-80", /ports must be/],
    ["1.2.3.4:70000", /ports must be/],
    ["::1", /IPv6/],
    ["fe80::/10", /IPv6/],
    ["example.com", /IPv6|IPv4 CIDR/],
    ["1.2.3.4:80:90", /IPv4 CIDR/],
    ["1.2.3.4/8 -j ACCEPT", /IPv4 CIDR/],
    ["010.0.0.1", /IPv4 CIDR/],
    ["1.2.3.4:0443", /IPv4 CIDR/],
    ["1.2.3.0/024", /IPv4 CIDR/],
  ];
  for (const [text, reason] of refused) assert.throws(() => parseEgressRule(text), (err: unknown) => err instanceof EgressRuleError && reason.test(err.message), text);
});

test("egress policy: blockNetwork and allowList are exclusive; lists are canonical, sorted and deduplicated", () => {
  assert.equal(egressPolicy(undefined, undefined), undefined);
  assert.equal(egressPolicy(false, undefined), undefined);
  assert.deepEqual(egressPolicy(true, undefined), { block: true });
  assert.deepEqual(egressPolicy(false, ["203.0.113.7", "10.0.0.0/8", "203.0.113.7/32"]), { allow: ["10.0.0.0/8", "203.0.113.7/32"] });
  assert.deepEqual(egressPolicy(undefined, []), { allow: [] });
  assert.throws(() => egressPolicy(true, []), /mutually exclusive/);
  assert.ok(cidrContains("10.219.0.0/16", "10.219.77.1"));
  assert.ok(!cidrContains("10.219.0.0/16", "10.220.0.1"));
  assert.ok(cidrContains("0.0.0.0/0", "203.0.113.9"));
});

test("stub configs carry the policy only when set (older configs keep their hash) and refuse bad lists as INVALID_CONFIG", () => {
  const plain = normalizeStubConfig("endpoint", {});
  assert.equal("egress" in plain, false);
  assert.equal(hashStubConfig(plain), hashStubConfig(normalizeStubConfig("endpoint", { blockNetwork: false })));
  assert.deepEqual(normalizeStubConfig("taskqueue", { blockNetwork: true }).egress, { block: true });
  assert.deepEqual(normalizeStubConfig("function", { allowList: ["203.0.113.0/24:443"] }).egress, { allow: ["203.0.113.0/24:443"] });
  assert.throws(() => normalizeStubConfig("endpoint", { allowList: ["10.1.2.3/8"] }), (err: unknown) => err instanceof StubConfigError && err.field === "allowList");
  assert.throws(() => normalizeStubConfig("endpoint", { blockNetwork: true, allowList: [] }), /mutually exclusive/);
});
