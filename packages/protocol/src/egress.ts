/**
 * Container egress policy, as users write it (`blockNetwork`, `allowList`) and as the worker
 * enforces it. The gateway validates with `egressPolicy()` and the worker parses the same strings
 * again with `parseEgressRule()` before it writes a single iptables rule: one parser for both.
 *
 * Default (no policy): a container reaches the internet and DNS, and nothing on the host, on
 * private or link-local ranges, or in another container. `blockNetwork`: nothing at all.
 * `allowList`: only the listed IPv4 CIDRs (optionally one port or a range), plus DNS. An entry in a
 * private range still needs the worker's operator to allow it (`--egress-allow`): a tenant can
 * only narrow the default, never widen it.
 */
import { Type, type Static } from "@sinclair/typebox";

/** "CIDR", "CIDR:PORT" or "CIDR:LOW-HIGH"; a bare address means /32. */
export const EgressRuleTextSchema = Type.String({ minLength: 7, maxLength: 40, pattern: "^[0-9a-fA-F.:/-]+$" });
export const MAX_ALLOW_LIST = 64;
export const AllowListSchema = Type.Array(EgressRuleTextSchema, { maxItems: MAX_ALLOW_LIST });

/** The wire form on a container request; absent means the default policy. */
export const EgressPolicySchema = Type.Object(
  { block: Type.Optional(Type.Boolean()), allow: Type.Optional(AllowListSchema) },
  { additionalProperties: false },
);
export type EgressPolicy = Static<typeof EgressPolicySchema>;

export interface EgressRule {
  /** Normalized "a.b.c.d/n" with no host bits set. */
  cidr: string;
  /** Inclusive destination port range (TCP and UDP); absent: every port. */
  ports?: [number, number];
}

export class EgressRuleError extends Error {
  constructor(readonly rule: string, reason: string) {
    super(`${JSON.stringify(rule)}: ${reason}`);
    this.name = "EgressRuleError";
  }
}

// No leading zeros anywhere: iptables reads "010.0.0.1" and ":0443" as octal (8.0.0.1, port 291).
const NUM = "(?:0|[1-9]\\d{0,4})";
const OCTET = "(?:0|[1-9]\\d{0,2})";
const RULE = new RegExp(`^(${OCTET}(?:\\.${OCTET}){3})(?:\\/(${NUM}))?(?::(${NUM})(?:-(${NUM}))?)?$`);

export function ipv4ToInt(address: string): number | undefined {
  const octets = address.split(".").map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) return undefined;
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
}

export function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

export function parseEgressRule(text: string): EgressRule {
  if (!text.includes(".") || text.includes("::") || /[a-fA-F]/.test(text)) {
    throw new EgressRuleError(text, "IPv6 is disabled in containers; list IPv4 CIDRs such as 203.0.113.0/24 or 203.0.113.7:443");
  }
  const match = RULE.exec(text);
  if (!match) throw new EgressRuleError(text, "must be an IPv4 CIDR with an optional port or range: 203.0.113.0/24, 203.0.113.7:443 or 0.0.0.0/0:8000-8100");
  const [, address, prefixText, lowText, highText] = match;
  const base = ipv4ToInt(address!);
  if (base === undefined) throw new EgressRuleError(text, `${address} is not an IPv4 address`);
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (prefix > 32) throw new EgressRuleError(text, "the prefix length must be 0 to 32");
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((base & mask) >>> 0 !== base) {
    throw new EgressRuleError(text, `has host bits set; did you mean ${intToIpv4((base & mask) >>> 0)}/${prefix}?`);
  }
  const rule: EgressRule = { cidr: `${address}/${prefix}` };
  if (lowText !== undefined) {
    const low = Number(lowText);
    const high = highText === undefined ? low : Number(highText);
    if (low < 1 || high > 65_535 || low > high) throw new EgressRuleError(text, "ports must be 1 to 65535, low-high with low ≤ high");
    rule.ports = [low, high];
  }
  return rule;
}

export function formatEgressRule(rule: EgressRule): string {
  if (!rule.ports) return rule.cidr;
  const [low, high] = rule.ports;
  return `${rule.cidr}:${low === high ? low : `${low}-${high}`}`;
}

/** Whether `address` lies inside `cidr` (both IPv4). */
export function cidrContains(cidr: string, address: string): boolean {
  const [base, prefixText] = cidr.split("/");
  const prefix = Number(prefixText ?? 32);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const a = ipv4ToInt(address);
  const b = ipv4ToInt(base ?? "");
  return a !== undefined && b !== undefined && ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

/**
 * What a user asked for → the canonical wire policy (undefined: the default). Throws
 * EgressRuleError naming the entry that is wrong, or a plain Error when both options are set.
 */
export function egressPolicy(blockNetwork: boolean | undefined, allowList: readonly string[] | undefined): EgressPolicy | undefined {
  if (blockNetwork && allowList !== undefined) {
    throw new EgressRuleError("allowList", "blockNetwork and allowList are mutually exclusive: blockNetwork allows nothing, allowList only what it lists");
  }
  if (blockNetwork) return { block: true };
  if (allowList === undefined) return undefined;
  if (allowList.length > MAX_ALLOW_LIST) throw new EgressRuleError("allowList", `at most ${MAX_ALLOW_LIST} entries`);
  const canonical = [...new Set(allowList.map((text) => formatEgressRule(parseEgressRule(text))))].sort();
  return { allow: canonical };
}
