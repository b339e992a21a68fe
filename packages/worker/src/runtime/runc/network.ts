/**
 * "bridge" networking: one Linux bridge per runtime (the subnet's .1), and per container a named
 * netns with a veth pair: the host end on the bridge, `eth0` inside with an address from the pool
 * and a default route via the bridge. Built with `ip netns add` + two `ip -batch` runs (the fast
 * path measured in the feasibility notes, ~6.5 ms).
 */
import type { EgressPolicy } from "@beta9/protocol";
import { join } from "node:path";
import { findExecutable, tryRun, run } from "../../exec.js";
import {
  addContainerPolicy, egressInstalled, forgetConnections, hasOwnPolicy, installEgress, removeContainerPolicy, removeEgress, type EgressConfig,
} from "./egress.js";

/** How often the filter's jumps are checked for (a host firewall reload flushes FORWARD and INPUT). */
const EGRESS_CHECK_MS = 5_000;
import { enableForwarding, restoreForwarding } from "./forwarding.js";
import { installMasquerade, removeMasquerade } from "./iptables.js";
import type { RuntimeNames } from "./names.js";
import { AddressPool, parseSubnet, subnetContains, type Subnet } from "./subnet.js";

export const NETNS_DIR = "/var/run/netns";

export interface ContainerNetwork {
  netns: string;
  veth: string;
  ip: string;
  /** Whether this container has a chain of its own in the egress policy. */
  ownPolicy?: boolean;
}

export class BridgeNetwork {
  readonly subnet: Subnet;
  private readonly pool: AddressPool;
  private bridgeReady: Promise<void> | undefined;
  private readonly egress: EgressConfig;
  /** Whether the host has the conntrack tool (a container's tracked flows are then dropped with it). */
  private readonly conntrack: boolean;
  private egressCheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly names: RuntimeNames,
    subnetCidr: string,
    readonly bridge: string,
    egress: Pick<EgressConfig, "operatorAllow" | "nameservers">,
  ) {
    this.subnet = parseSubnet(subnetCidr);
    this.pool = new AddressPool(this.subnet);
    this.egress = { names, bridge, ...egress };
    this.conntrack = findExecutable("conntrack") !== undefined;
  }

  /** Creates the bridge, NAT chain and forwarding once per runtime instance; concurrent callers share the work. */
  ensureBridge(): Promise<void> {
    this.bridgeReady ??= this.createBridge().catch((error: unknown) => {
      this.bridgeReady = undefined; // let a later start() retry instead of caching the failure
      throw error;
    });
    return this.bridgeReady;
  }

  private async createBridge(): Promise<void> {
    await this.assertSubnetFree();
    const added = await tryRun("ip", ["link", "add", this.bridge, "type", "bridge"]);
    if (added.code !== 0 && !added.stderr.includes("File exists")) throw new Error(`cannot create bridge ${this.bridge}: ${added.stderr.trim()}`);
    const gatewayCidr = `${this.subnet.gateway}/${this.subnet.prefix}`;
    await run("ip", ["-batch", "-"], { input: `addr replace ${gatewayCidr} dev ${this.bridge}\nlink set ${this.bridge} up\n` });
    // The filter goes in before forwarding is on: no container traffic ever passes unfiltered.
    await installEgress(this.egress);
    enableForwarding(this.bridge);
    await installMasquerade(this.names.postroutingChain, this.subnet.cidr, this.bridge);
    this.watchEgress();
  }

  /** Puts the filter back when something (ufw reload, firewalld, a restore) removed our jumps. */
  private watchEgress(): void {
    clearInterval(this.egressCheck);
    let checking = false;
    this.egressCheck = setInterval(() => {
      if (checking) return;
      checking = true;
      void egressInstalled(this.egress)
        .then((ok) => (ok ? undefined : installEgress(this.egress)))
        .catch(() => undefined)
        .finally(() => (checking = false));
    }, EGRESS_CHECK_MS);
    this.egressCheck.unref();
  }

  /** Two bridges with one subnet would break routing for both; fail clearly instead. */
  private async assertSubnetFree(): Promise<void> {
    const output = await run("ip", ["-o", "-4", "addr", "show"]);
    for (const line of output.split("\n")) {
      const match = /^\d+:\s+(\S+)\s+inet\s+([\d.]+)\//.exec(line);
      if (match?.[1] && match[2] && match[1] !== this.bridge && subnetContains(this.subnet, match[2])) {
        throw new Error(`subnet ${this.subnet.cidr} is already in use on ${match[1]} (${match[2]}); give this runtime another subnet`);
      }
    }
  }

  /** netns + veth + address + default route for one container. On failure, removes what it made. */
  /** `inNetns` (a netns setting of the caller's) runs beside the inside batch, off the critical path. */
  async attach(id: string, policy?: EgressPolicy, inNetns?: (netnsPath: string) => Promise<unknown>): Promise<ContainerNetwork> {
    await this.ensureBridge();
    const network: ContainerNetwork = { netns: this.names.netns(id), veth: this.names.newVeth(), ip: this.pool.allocate() };
    try {
      const hostSide = [
        `netns add ${network.netns}`,
        `link add ${network.veth} type veth peer name eth0 address ${macForIp(network.ip)} netns ${network.netns}`,
        `link set ${network.veth} master ${this.bridge} up`,
        // Port isolation: containers on this bridge cannot reach one another at layer 2; the
        // host (the bridge itself) still reaches each of them and they still reach it.
        `link set ${network.veth} type bridge_slave isolated on`,
      ];
      await run("ip", ["-batch", "-"], { input: hostSide.join("\n") + "\n" });
      const inside = [
        `addr add ${network.ip}/${this.subnet.prefix} dev eth0`,
        "link set eth0 up",
        "link set lo up",
        `route add default via ${this.subnet.gateway}`,
      ];
      // The policy is in place before the container's first process exists.
      if (hasOwnPolicy(policy)) {
        network.ownPolicy = true;
        await addContainerPolicy(this.egress, network.ip, policy);
      }
      await Promise.all([
        run("ip", ["-n", network.netns, "-batch", "-"], { input: inside.join("\n") + "\n" }),
        inNetns?.(join(NETNS_DIR, network.netns)),
      ]);
      return network;
    } catch (error) {
      await this.detach(network);
      throw error;
    }
  }

  /**
   * Deletes the host-side veth first (deleting only the netns removes the pair asynchronously),
   * then the netns, and frees the address.
   */
  async detach(network: ContainerNetwork): Promise<void> {
    await deleteVeths([network.veth]);
    // The container's processes are gone: its tracked flows are forgotten while its netns goes.
    await Promise.all([deleteNetns([network.netns]), this.conntrack ? forgetConnections(network.ip) : undefined]);
    // After the netns is gone, so the address is never reused while the old policy still applies to it.
    if (network.ownPolicy) await removeContainerPolicy(this.egress, network.ip);
    this.pool.release(network.ip);
  }

  /** Removes the bridge and our NAT chain, and restores ip_forward if it was the last beta9 bridge. */
  async removeBridge(): Promise<void> {
    this.bridgeReady = undefined;
    clearInterval(this.egressCheck);
    restoreForwarding(this.bridge);
    await tryRun("ip", ["link", "del", this.bridge]);
    await removeMasquerade(this.names.postroutingChain);
    await removeEgress(this.egress);
  }
}

/**
 * eth0's MAC, derived from its IP (as Docker does). Addresses are reused as containers come and
 * go; with a random MAC the host's ARP entry for a reused IP still names the previous container's
 * MAC, and connections time out until it expires (seen: 15 s). Same IP → same MAC avoids that.
 * 02: locally administered unicast.
 */
export function macForIp(ip: string): string {
  return ["02", "b9", ...ip.split(".").map((octet) => Number(octet).toString(16).padStart(2, "0"))].join(":");
}

/** Network namespaces (`ip netns list`) whose name starts with `prefix`. */
export async function listNetns(prefix: string): Promise<string[]> {
  const output = await tryRun("ip", ["netns", "list"]);
  return output.stdout
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(prefix));
}

/** Host veth interfaces whose name starts with `prefix`. */
export async function listVeths(prefix: string): Promise<string[]> {
  const output = await tryRun("ip", ["-o", "link", "show", "type", "veth"]);
  return output.stdout
    .split("\n")
    .map((line) => /^\d+:\s+([^@:\s]+)/.exec(line)?.[1] ?? "")
    .filter((name) => name.startsWith(prefix));
}

export async function deleteVeths(veths: string[]): Promise<void> {
  if (veths.length === 0) return;
  // -force: keep going past a veth that is already gone (its netns was deleted first).
  await tryRun("ip", ["-force", "-batch", "-"], { input: veths.map((veth) => `link del ${veth}`).join("\n") + "\n" });
}

export async function deleteNetns(names: string[]): Promise<void> {
  if (names.length === 0) return;
  await tryRun("ip", ["-force", "-batch", "-"], { input: names.map((name) => `netns del ${name}`).join("\n") + "\n" });
}
