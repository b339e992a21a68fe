/**
 * NAT egress for the container subnet: one nat chain per runtime, jumped to from POSTROUTING, that
 * MASQUERADEs the subnet's traffic leaving through any interface but the bridge. Own chain, so
 * close() removes exactly our rules and nobody else's.
 */
import { run, tryRun } from "../../exec.js";

export async function installMasquerade(chain: string, subnet: string, bridge: string): Promise<void> {
  // A declared chain is created, or flushed if it exists (a crashed run's leftover): idempotent.
  const rules = [`*nat`, `:${chain} - [0:0]`, `-A ${chain} -s ${subnet} ! -o ${bridge} -j MASQUERADE`, `COMMIT`, ``].join("\n");
  await run("iptables-restore", ["-w", "--noflush"], { input: rules });
  const jump = await tryRun("iptables", ["-w", "-t", "nat", "-C", "POSTROUTING", "-j", chain]);
  if (jump.code !== 0) await run("iptables", ["-w", "-t", "nat", "-A", "POSTROUTING", "-j", chain]);
}

/** Removes our chain and its jump. Returns whether the chain existed. */
export async function removeMasquerade(chain: string): Promise<boolean> {
  for (let i = 0; i < 16; i++) {
    const removed = await tryRun("iptables", ["-w", "-t", "nat", "-D", "POSTROUTING", "-j", chain]);
    if (removed.code !== 0) break;
  }
  const flushed = await tryRun("iptables", ["-w", "-t", "nat", "-F", chain]);
  if (flushed.code !== 0) return false;
  await run("iptables", ["-w", "-t", "nat", "-X", chain]);
  await dropNatTableIfEmpty();
  return true;
}

/**
 * With the nft backend, creating our chain also created the `ip nat` table (and its base chains),
 * which stays after our chain is gone. Delete it again when it holds nothing at all — only base
 * chains with ACCEPT policy and no rules, i.e. it has no effect — so the ruleset looks as before.
 * Restoring an empty `*nat` section deletes the table on the nft backend (flush = delete there).
 */
async function dropNatTableIfEmpty(): Promise<void> {
  const saved = await tryRun("iptables-save", []);
  if (saved.code !== 0 || !/^\*nat$/m.test(saved.stdout)) return;
  const section = saved.stdout.split(/^\*nat$/m)[1]?.split(/^COMMIT$/m)[0] ?? "";
  const lines = section.split("\n").filter((line) => line && !line.startsWith("#"));
  const onlyEmptyBaseChains = lines.every((line) => /^:(PREROUTING|INPUT|OUTPUT|POSTROUTING) ACCEPT /.test(line));
  if (onlyEmptyBaseChains && saved.stdout.includes("nf_tables")) {
    await tryRun("iptables-restore", ["-w"], { input: "*nat\nCOMMIT\n" });
  }
}
