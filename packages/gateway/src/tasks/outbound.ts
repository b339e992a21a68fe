/**
 * Where the gateway may send requests a tenant chose the address of (completion callbacks): not
 * to loopback, link-local (cloud metadata), private, shared, multicast or reserved addresses,
 * unless the operator allows private targets (BETA9_ALLOW_PRIVATE_CALLBACKS=1). The name is
 * resolved once and the connection pinned to the checked address, so a DNS answer that changes
 * between the check and the connect (rebinding) cannot redirect it.
 */
import { lookup } from "node:dns/promises";
import { isIP, type LookupFunction } from "node:net";
import { isPrivateAddress } from "@beta9/protocol";
import { Agent } from "undici";

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
