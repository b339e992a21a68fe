/**
 * Where the gateway may send requests a tenant chose the address of (completion callbacks): not
 * to loopback, link-local (cloud metadata), private, shared, multicast or reserved addresses,
 * unless the operator allows private targets (BETA9_ALLOW_PRIVATE_CALLBACKS=1). The name is
 * resolved once and the connection pinned to the checked address, so a DNS answer that changes
 * between the check and the connect (rebinding) cannot redirect it.
 */
import { lookup } from "node:dns/promises";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { Agent } from "undici";

const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12],
  ["192.0.0.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["224.0.0.0", 4], ["240.0.0.0", 4],
] as const) blocked.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [["::", 96], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8], ["64:ff9b::", 96], ["64:ff9b:1::", 48]] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

/** True for an address a tenant must not make the gateway reach (IPv4-mapped IPv6 checked as IPv4). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return blocked.check(mapped, "ipv4");
  const family = isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 4 ? "ipv4" : "ipv6");
}

export class OutboundRefused extends Error {
  override name = "OutboundRefused";
}

/**
 * An undici dispatcher pinned to the one checked address of `url`'s host; throws OutboundRefused
 * when that address is private (and private targets are not allowed).
 */
export async function pinnedDispatcher(url: string, allowPrivate: boolean): Promise<Agent> {
  const { hostname } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, "");
  const { address, family } = isIP(host) ? { address: host, family: isIP(host) } : await lookup(host);
  if (!allowPrivate && isPrivateAddress(address)) {
    throw new OutboundRefused(`${hostname} is ${address}, a loopback, link-local or private address; callbacks go to public addresses only (an operator can allow private ones with BETA9_ALLOW_PRIVATE_CALLBACKS=1)`);
  }
  return new Agent({
    connect: {
      lookup: ((_name: string, options: { all?: boolean }, callback: (err: Error | null, ...rest: unknown[]) => void) =>
        options?.all ? callback(null, [{ address, family }]) : callback(null, address, family)) as unknown as LookupFunction,
    },
  });
}
