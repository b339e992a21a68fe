/**
 * net.ipv4.ip_forward: NAT egress needs it on, and the host should get its old value back when the
 * last beta9 bridge goes away. The value from before is recorded in the bridge's own ifalias
 * ("beta9 ip_forward_before=0"), so it lives exactly as long as the bridges do, survives a crashed
 * worker, and is shared by several runtimes on one host without any file of its own.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
const SYS_NET = "/sys/class/net";
const MARKER = /beta9 ip_forward_before=(\d)/;

function readAlias(iface: string): string {
  try {
    return readFileSync(`${SYS_NET}/${iface}/ifalias`, "utf8");
  } catch {
    return "";
  }
}

/** ip_forward as it was before the first beta9 bridge, as recorded on `iface`. */
function recordedOn(iface: string): string | undefined {
  return MARKER.exec(readAlias(iface))?.[1];
}

/** Other interfaces carrying the marker, i.e. other live beta9 bridges (any runtime, any name). */
function otherMarkedBridges(own: string): string[] {
  return readdirSync(SYS_NET).filter((iface) => iface !== own && recordedOn(iface) !== undefined);
}

/** Records the pre-beta9 value on `bridge` (from a sibling bridge, our own leftover alias, or now), then turns forwarding on. */
export function enableForwarding(bridge: string): void {
  const current = readFileSync(IP_FORWARD, "utf8").trim();
  const before = otherMarkedBridges(bridge).map(recordedOn).find((value) => value !== undefined) ?? recordedOn(bridge) ?? current;
  writeFileSync(`${SYS_NET}/${bridge}/ifalias`, `beta9 ip_forward_before=${before}`);
  if (current !== "1") writeFileSync(IP_FORWARD, "1");
}

/** Call before deleting `bridge`: if it is the last beta9 bridge, put ip_forward back as it was. */
export function restoreForwarding(bridge: string): void {
  const before = recordedOn(bridge);
  if (before !== undefined && otherMarkedBridges(bridge).length === 0) writeFileSync(IP_FORWARD, before);
}
