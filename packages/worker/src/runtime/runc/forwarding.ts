/**
 * net.ipv4.ip_forward: NAT egress needs it on, and the host should get its old value back when the
 * last beta9 bridge goes away. The value from before is recorded in the bridge's own ifalias
 * ("beta9 ip_forward_before=0"), so it lives exactly as long as the bridges do, survives a crashed
 * worker, and is shared by several runtimes on one host without any file of its own.
 *
 * Aliases go through `ip` (netlink), not /sys/class/net: sysfs shows the interfaces of the network
 * namespace it was mounted in, so a worker started with `nsenter --net=…` (a machine simulated in a
 * netns, or a worker in another host's namespace) would not find its own bridge there.
 * /proc/sys/net follows the reading process's namespace, so ip_forward is read and set directly.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
const MARKER = /beta9 ip_forward_before=(\d)/;

/** Every interface of this network namespace → its alias ("" when none). */
function aliases(): Map<string, string> {
  try {
    const links = JSON.parse(execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" })) as { ifname: string; ifalias?: string }[];
    return new Map(links.map((l) => [l.ifname, l.ifalias ?? ""]));
  } catch {
    return new Map();
  }
}

function readAlias(iface: string): string {
  return aliases().get(iface) ?? "";
}

/** ip_forward as it was before the first beta9 bridge, as recorded on `iface`. */
function recordedOn(iface: string): string | undefined {
  return MARKER.exec(readAlias(iface))?.[1];
}

/** Other interfaces carrying the marker, i.e. other live beta9 bridges (any runtime, any name). */
function otherMarkedBridges(own: string): string[] {
  return [...aliases()].filter(([iface, alias]) => iface !== own && MARKER.test(alias)).map(([iface]) => iface);
}

/** Records the pre-beta9 value on `bridge` (from a sibling bridge, our own leftover alias, or now), then turns forwarding on. */
export function enableForwarding(bridge: string): void {
  const current = readFileSync(IP_FORWARD, "utf8").trim();
  const before = otherMarkedBridges(bridge).map(recordedOn).find((value) => value !== undefined) ?? recordedOn(bridge) ?? current;
  execFileSync("ip", ["link", "set", "dev", bridge, "alias", `beta9 ip_forward_before=${before}`]);
  if (current !== "1") writeFileSync(IP_FORWARD, "1");
}

/** Call before deleting `bridge`: if it is the last beta9 bridge, put ip_forward back as it was. */
export function restoreForwarding(bridge: string): void {
  const before = recordedOn(bridge);
  if (before !== undefined && otherMarkedBridges(bridge).length === 0) writeFileSync(IP_FORWARD, before);
}
