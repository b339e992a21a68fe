/**
 * Egress filtering for a runtime's bridge, in filter-table chains of our own (see names.ts):
 *
 *   FORWARD -i/-o <bridge> → B9-<N>-FWD   traffic a container sends off the machine (or to another bridge)
 *   INPUT   -i <bridge>    → B9-<N>-IN    traffic a container sends to this machine itself
 *   both                   → B9-<N>-CTR   one `-s <ip> -j B9-<N>-<hex ip>` per container with its own policy
 *
 * Default: replies to connections the host opened (the gateway reaching a runner) pass; a container
 * reaches DNS (the host's resolvers) and the internet; private, link-local, loopback, multicast and
 * reserved ranges, this machine's addresses and the other containers are refused, except what the
 * operator allowed (`egressAllow`). A container's own policy (blockNetwork / allowList) is applied
 * first and can only narrow that: its chain RETURNs what it allows and refuses the rest. IPv6 is off
 * on the bridge, so nothing v6 reaches the host. The rules are kernel state: they outlive a crashed
 * worker, and the next worker re-declares them before it starts a container.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cidrContains, ipv4ToInt, parseEgressRule, PRIVATE_IPV4_RANGES, type EgressPolicy, type EgressRule } from "@beta9/protocol";
import { run, tryRun } from "../../exec.js";
import type { RuntimeNames } from "./names.js";

/**
 * What a container's refused packet gets: an ICMP "administratively prohibited", so its connect()
 * fails at once with EHOSTUNREACH instead of hanging until a timeout. (Unsolicited traffic towards
 * containers is dropped silently.)
 */
const REFUSE = "REJECT --reject-with icmp-admin-prohibited";

/** Where containers never go unless the operator allows it: the ranges the gateway's callbacks refuse too. */
export const DENIED_RANGES = PRIVATE_IPV4_RANGES;

export interface EgressConfig {
  names: RuntimeNames;
  bridge: string;
  /** Destinations the operator opened to every container (e.g. a package mirror on the LAN). */
  operatorAllow: EgressRule[];
  /** IPv4 resolvers containers may query on port 53 (the host's, from /etc/resolv.conf). */
  nameservers: string[];
}

/** The host's IPv4 resolvers a container can reach (loopback ones are the host's own stub: useless inside). */
export function hostNameservers(resolvConf = "/etc/resolv.conf"): string[] {
  let text = "";
  try {
    text = readFileSync(resolvConf, "utf8");
  } catch {
    return [];
  }
  const found = text.split("\n").map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1] ?? "");
  return [...new Set(found.filter((ip) => ipv4ToInt(ip) !== undefined && !cidrContains("127.0.0.0/8", ip)))];
}

/** `-d … [-p tcp|udp --dport …]` variants of one rule, each followed by `target`. */
function ruleLines(chain: string, rule: EgressRule, target: string): string[] {
  if (!rule.ports) return [`-A ${chain} -d ${rule.cidr} -j ${target}`];
  const [low, high] = rule.ports;
  const dport = low === high ? `${low}` : `${low}:${high}`;
  return ["tcp", "udp"].map((proto) => `-A ${chain} -d ${rule.cidr} -p ${proto} -m ${proto} --dport ${dport} -j ${target}`);
}

function dnsLines(chain: string, nameservers: string[], target: string): string[] {
  return nameservers.flatMap((ns) => ruleLines(chain, { cidr: `${ns}/32`, ports: [53, 53] }, target));
}

/**
 * iptables-restore input (with --noflush) that (re)declares and fills the base chains. The
 * containers' chain is declared (so flushed) only when it does not exist yet: filling the base
 * chains again after a firewall reload must not drop the containers' own policies.
 */
export function baseChainsScript(c: EgressConfig, o: { declareContainers?: boolean } = {}): string {
  const { forwardChain: fwd, inputChain: inp, containersChain: ctr } = c.names;
  const established = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT";
  const allowed = (chain: string): string[] => [
    ...c.operatorAllow.flatMap((rule) => ruleLines(chain, rule, "ACCEPT")),
    ...dnsLines(chain, c.nameservers, "ACCEPT"),
  ];
  // Every packet a container sends meets its own chain first, established or not: a connection
  // tracked for a previous holder of its address must not carry a blockNetwork container out.
  return [
    "*filter",
    `:${fwd} - [0:0]`, `:${inp} - [0:0]`, ...(o.declareContainers === false ? [] : [`:${ctr} - [0:0]`]),
    // Into a container: replies only; new connections from anywhere else (a LAN route, another bridge) are dropped.
    `-A ${fwd} -o ${c.bridge} ${established}`,
    `-A ${fwd} -o ${c.bridge} -j DROP`,
    `-A ${fwd} -j ${ctr}`,
    `-A ${fwd} ${established}`,
    ...allowed(fwd),
    ...DENIED_RANGES.map((range) => `-A ${fwd} -d ${range} -j ${REFUSE}`),
    `-A ${fwd} -j ACCEPT`,
    `-A ${inp} -j ${ctr}`,
    `-A ${inp} ${established}`,
    ...allowed(inp),
    `-A ${inp} -j ${REFUSE}`,
    "COMMIT",
    "",
  ].join("\n");
}

/** iptables-restore input (with --noflush) that gives one container its own policy. */
export function containerPolicyScript(c: EgressConfig, ip: string, policy: EgressPolicy): string {
  const chain = c.names.containerChain(ip);
  // Replies to connections opened towards the container (the gateway reaching its runner or daemon)
  // pass; anything the container itself originates, an old tracked flow of its address included, is judged.
  const replies = `-A ${chain} -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN`;
  const own = policy.block
    ? [replies, `-A ${chain} -j ${REFUSE}`]
    : [
        replies,
        ...(policy.allow ?? []).map(parseEgressRule).flatMap((rule) => ruleLines(chain, rule, "RETURN")),
        ...dnsLines(chain, c.nameservers, "RETURN"),
        `-A ${chain} -j ${REFUSE}`,
      ];
  return ["*filter", `:${chain} - [0:0]`, ...own, `-A ${c.names.containersChain} -s ${ip}/32 -j ${chain}`, "COMMIT", ""].join("\n");
}

/** Whether a policy asks for anything the default does not already do. */
export function hasOwnPolicy(policy: EgressPolicy | undefined): policy is EgressPolicy {
  return policy !== undefined && (policy.block === true || policy.allow !== undefined);
}

const JUMPS = (c: EgressConfig): string[][] => [
  ["FORWARD", "-i", c.bridge, "-j", c.names.forwardChain],
  ["FORWARD", "-o", c.bridge, "-j", c.names.forwardChain],
  ["INPUT", "-i", c.bridge, "-j", c.names.inputChain],
];

/** Declares the chains (flushing leftovers), then puts our jumps first in FORWARD and INPUT. */
export async function installEgress(c: EgressConfig): Promise<void> {
  const containersChainExists = (await tryRun("iptables", ["-w", "-S", c.names.containersChain])).code === 0;
  await run("iptables-restore", ["-w", "--noflush"], { input: baseChainsScript(c, { declareContainers: !containersChainExists }) });
  for (const [chain, ...rule] of JUMPS(c)) {
    const present = await tryRun("iptables", ["-w", "-C", chain!, ...rule]);
    if (present.code !== 0) await run("iptables", ["-w", "-I", chain!, "1", ...rule]);
  }
  disableIpv6(c.bridge);
}

/**
 * IPv6 off on the bridge: the host then neither answers nor routes any v6 a container sends. Fails
 * closed: where IPv6 exists but cannot be turned off, the bridge is not used (no v6 filter stands in).
 */
export function disableIpv6(iface: string): void {
  if (!existsSync("/proc/sys/net/ipv6")) return; // no IPv6 in this kernel or namespace: nothing to reach
  const path = `/proc/sys/net/ipv6/conf/${iface}/disable_ipv6`;
  writeFileSync(path, "1");
  if (readFileSync(path, "utf8").trim() !== "1") throw new Error(`cannot turn IPv6 off on ${iface} (${path}): containers would reach the host over IPv6`);
}

/** Whether our jumps are still first-class citizens of FORWARD and INPUT (a firewall reload may have flushed them). */
export async function egressInstalled(c: EgressConfig): Promise<boolean> {
  for (const [chain, ...rule] of JUMPS(c)) {
    if ((await tryRun("iptables", ["-w", "-C", chain!, ...rule])).code !== 0) return false;
  }
  return true;
}

export async function addContainerPolicy(c: EgressConfig, ip: string, policy: EgressPolicy): Promise<void> {
  await run("iptables-restore", ["-w", "--noflush"], { input: containerPolicyScript(c, ip, policy) });
}

/**
 * Forgets the connections tracked for a container's address (the `conntrack` tool, when the host has
 * it), so that nothing of one container's flows (NAT mappings included) outlives it for the next
 * holder of the address. Its chain already refuses them; this drops what would still come in.
 */
export async function forgetConnections(ip: string): Promise<void> {
  // Flows the container originated (its NAT mappings among them); flows towards it end with the host's sockets.
  await tryRun("conntrack", ["-D", "-s", ip]);
}

export async function removeContainerPolicy(c: EgressConfig, ip: string): Promise<void> {
  const chain = c.names.containerChain(ip);
  const script = ["*filter", `-D ${c.names.containersChain} -s ${ip}/32 -j ${chain}`, `-F ${chain}`, `-X ${chain}`, "COMMIT", ""].join("\n");
  const done = await tryRun("iptables-restore", ["-w", "--noflush"], { input: script });
  if (done.code === 0) return;
  // Part of it was already gone (restore is all or nothing): remove what is left, one by one.
  for (let i = 0; i < 16; i++) if ((await tryRun("iptables", ["-w", "-D", c.names.containersChain, "-s", `${ip}/32`, "-j", chain])).code !== 0) break;
  await tryRun("iptables", ["-w", "-F", chain]);
  await tryRun("iptables", ["-w", "-X", chain]);
}

/** Our per-container chains present in the kernel (a crashed worker's too). */
async function containerChains(names: RuntimeNames): Promise<string[]> {
  const listed = await tryRun("iptables", ["-w", "-S"]);
  const pattern = new RegExp(`^-N (${names.containerChainPrefix}[0-9A-F]{8})$`);
  return listed.stdout.split("\n").map((line) => pattern.exec(line)?.[1]).filter((name): name is string => name !== undefined);
}

/** Flushes `parent` (dropping its jumps into them), then flushes and deletes each chain. */
async function deleteChains(chains: string[], parent: string): Promise<void> {
  await tryRun("iptables", ["-w", "-F", parent]);
  for (const chain of chains) {
    await tryRun("iptables", ["-w", "-F", chain]);
    await tryRun("iptables", ["-w", "-X", chain]);
  }
}

/** Removes per-container chains a dead worker left; the base chains stay until close(). Returns how many. */
export async function reapContainerPolicies(names: RuntimeNames): Promise<number> {
  const chains = await containerChains(names);
  await deleteChains(chains, names.containersChain);
  return chains.length;
}

/** Removes our jumps and every chain we made. Returns whether the base chains existed. */
export async function removeEgress(c: EgressConfig): Promise<boolean> {
  for (const [chain, ...rule] of JUMPS(c)) {
    for (let i = 0; i < 16; i++) if ((await tryRun("iptables", ["-w", "-D", chain!, ...rule])).code !== 0) break;
  }
  await reapContainerPolicies(c.names);
  let existed = false;
  for (const chain of [c.names.forwardChain, c.names.inputChain, c.names.containersChain]) {
    if ((await tryRun("iptables", ["-w", "-F", chain])).code === 0) existed = true;
  }
  for (const chain of [c.names.forwardChain, c.names.inputChain, c.names.containersChain]) await tryRun("iptables", ["-w", "-X", chain]);
  return existed;
}
