/**
 * Addresses a tenant must not make our processes reach (the gateway's callbacks, the worker's
 * registry pulls): loopback, link-local (cloud metadata), private, shared (CGNAT), multicast and
 * reserved ranges, IPv4 and IPv6; IPv4-mapped IPv6 is checked as IPv4.
 */
import { BlockList, isIP } from "node:net";

/**
 * The IPv4 ranges, as CIDRs: also what container egress refuses by default (worker egress.ts).
 * 168.63.129.16 is public, but it is Azure's platform endpoint (WireServer: VM agent, extensions,
 * health): a tenant must not reach it any more than metadata at 169.254.169.254.
 */
export const PRIVATE_IPV4_RANGES = [
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
  "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "168.63.129.16/32",
] as const;

const blocked = new BlockList();
for (const cidr of PRIVATE_IPV4_RANGES) {
  const [net, prefix] = cidr.split("/");
  blocked.addSubnet(net!, Number(prefix), "ipv4");
}
// IPv4-compatible, loopback, ULA, link-local, multicast, NAT64, and the tunnels that carry IPv4 inside
// (6to4 2002::/16, Teredo 2001::/32), SIIT (::ffff:0:0:0/96) and the discard prefix.
for (const [net, prefix] of [
  ["::", 96], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8], ["64:ff9b::", 96], ["64:ff9b:1::", 48],
  ["2002::", 16], ["2001::", 32], ["::ffff:0:0:0", 96], ["100::", 64],
] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

/** True for a loopback, link-local, private or reserved address, and for anything that is not an address. */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return blocked.check(mapped, "ipv4");
  const family = isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 4 ? "ipv4" : "ipv6");
}
