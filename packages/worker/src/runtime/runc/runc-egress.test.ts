/**
 * The egress policy against real containers on real bridges. Every probe targets this machine
 * (servers the test starts on 0.0.0.0) or a container the test made; nothing leaves the host.
 * Rules for destinations that must not be contacted from a test (link-local metadata, private
 * ranges, the internet) are asserted by reading the installed chains.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import type { EgressPolicy } from "@beta9/protocol";
import { waitForHttp200 } from "../../testing/http.js";
import { captureHostState, ownedBy, type HostState } from "../../testing/host-state.js";
import { createHostRootfs, type HostRootfs } from "../../testing/rootfs.js";
import { makeStateRoot, makeTestRuntime, runcLeftovers, runcSkipReason, type TestRuntime } from "../../testing/runc-fixtures.js";
import type { ContainerSpec } from "../types.js";

const skipReason = runcSkipReason();

async function listen(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** An IPv4 address of this machine on an interface other than our bridges (the LAN side), if any. */
function otherHostAddress(): string | undefined {
  const output = execFileSync("ip", ["-o", "-4", "addr", "show", "scope", "global"], { encoding: "utf8" });
  for (const line of output.split("\n")) {
    const match = /^\d+:\s+(\S+)\s+inet\s+([\d.]+)\//.exec(line);
    if (match && !match[1]!.startsWith("b9br-")) return match[2];
  }
  return undefined;
}

const gatewayOf = (t: TestRuntime): string => `${t.subnet.split(".").slice(0, 3).join(".")}.1`;
const iptables = (...args: string[]): string => execFileSync("iptables", ["-w", ...args], { encoding: "utf8" });

if (skipReason) {
  test("runc egress policy", { skip: skipReason }, () => {});
} else {
  const hostBefore: HostState = captureHostState();
  const stateRoot = makeStateRoot();
  const rootfs: HostRootfs = createHostRootfs();
  const servers: Server[] = [];
  const runtimes: TestRuntime[] = [];
  let open: { server: Server; port: number };
  let closed: { server: Server; port: number };
  let plain: TestRuntime;
  let allowing: TestRuntime;

  const spec = (t: TestRuntime, id: string, command: string[], overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
    id, lowerDirs: [rootfs.lowerDir], mounts: rootfs.mounts, command, env: {}, cpuMillicores: 1000, memoryMiB: 256, ...overrides,
  });

  /** Runs one container that GETs each URL (1.5 s each, in parallel) and returns "reached:<body>" or "blocked" per URL. */
  const probe = async (t: TestRuntime, id: string, urls: string[], egress?: EgressPolicy): Promise<string[]> => {
    const script = `Promise.all(${JSON.stringify(urls)}.map((u) => fetch(u, { signal: AbortSignal.timeout(1500) })` +
      `.then((r) => r.text()).then((b) => "reached:" + b, () => "blocked"))).then((r) => console.log(r.join(" ")))`;
    const lines: string[] = [];
    const handle = await t.runtime.start(spec(t, id, ["node", "-e", script], egress ? { egress } : {}), (_s, line) => lines.push(line));
    const exit = await handle.exited;
    assert.equal(exit.exitCode, 0, JSON.stringify({ exit, lines }));
    assert.deepEqual(runcLeftovers(t, id), [], "everything released");
    return (lines[0] ?? "").split(" ");
  };

  describe("runc egress policy", { timeout: 180_000 }, () => {
    before(async () => {
      open = await listen("open");
      closed = await listen("closed");
      servers.push(open.server, closed.server);
      plain = makeTestRuntime("eg", stateRoot);
      runtimes.push(plain);
      // The operator opens exactly one port of the host (on this runtime's bridge address) to its containers.
      allowing = makeTestRuntime("ega", stateRoot, (subnet) => ({ egressAllow: [`${subnet.split(".").slice(0, 3).join(".")}.1/32:${open.port}`] }));
      runtimes.push(allowing);
    });
    after(async () => {
      for (const t of runtimes) {
        await t.runtime.close(500);
        await t.runtime.reap();
      }
      for (const server of servers) server.close();
    });

    test("by default a container reaches no port of the host: not on the bridge address, not on the host's other addresses", async () => {
      const lan = otherHostAddress();
      const urls = [`http://${gatewayOf(plain)}:${open.port}/`, ...(lan ? [`http://${lan}:${open.port}/`] : [])];
      assert.deepEqual(await probe(plain, "eg-host", urls), urls.map(() => "blocked"));
    });

    test("the host still reaches a container's port, and containers still do not reach each other", async () => {
      const serve = "require('http').createServer((q, r) => r.end('peer')).listen(8080)";
      const peer = await plain.runtime.start(spec(plain, "eg-peer", ["node", "-e", serve], { ports: [8080], egress: { block: true } }), () => {});
      try {
        const address = peer.ports[8080]!;
        assert.equal((await waitForHttp200(address)).body, "peer", "replies pass even under blockNetwork");
        assert.deepEqual(await probe(plain, "eg-peer-probe", [`http://${address.host}:8080/`]), ["blocked"]);
      } finally {
        await peer.stop(1000);
      }
    });

    test("the default chains refuse private, link-local (cloud metadata), loopback and multicast ranges and accept the rest", () => {
      const rules = iptables("-S", plain.names.forwardChain);
      for (const range of ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "224.0.0.0/4"]) {
        assert.ok(rules.includes(`-A ${plain.names.forwardChain} -d ${range} -j REJECT --reject-with icmp-admin-prohibited`), `${range} is refused:\n${rules}`);
      }
      const lines = rules.trim().split("\n");
      assert.equal(lines.at(-1), `-A ${plain.names.forwardChain} -j ACCEPT`, "the internet stays reachable");
      assert.equal(iptables("-S", plain.names.inputChain).trim().split("\n").at(-1), `-A ${plain.names.inputChain} -j REJECT --reject-with icmp-admin-prohibited`);
      // Our jumps come first, so another firewall's ACCEPT rules cannot pre-empt them.
      assert.match(iptables("-S", "FORWARD"), new RegExp(`^-P FORWARD \\w+\\n-A FORWARD -[io] b9br-${plain.name} -j ${plain.names.forwardChain}\\n`));
      assert.match(iptables("-S", "INPUT"), new RegExp(`^-P INPUT \\w+\\n-A INPUT -i b9br-${plain.name} -j ${plain.names.inputChain}\\n`));
    });

    test("IPv6 is off on the bridge, so no v6 packet from a container reaches the host", () => {
      const path = `/proc/sys/net/ipv6/conf/b9br-${plain.name}/disable_ipv6`;
      assert.equal(readFileSync(path, "utf8").trim(), "1");
      assert.equal(execFileSync("ip", ["-6", "addr", "show", "dev", `b9br-${plain.name}`], { encoding: "utf8" }).trim(), "");
    });

    test("the operator's egressAllow opens exactly the listed host port", async () => {
      const gateway = gatewayOf(allowing);
      const result = await probe(allowing, "ega-default", [`http://${gateway}:${open.port}/`, `http://${gateway}:${closed.port}/`]);
      assert.deepEqual(result, ["reached:open", "blocked"]);
    });

    test("a container's allowList narrows the default and cannot widen it; blockNetwork allows nothing", async () => {
      const gateway = gatewayOf(allowing);
      const urls = [`http://${gateway}:${open.port}/`, `http://${gateway}:${closed.port}/`];
      // Listed and allowed by the operator: reached. Listed but not allowed by the operator: still blocked.
      assert.deepEqual(await probe(allowing, "ega-list", urls, { allow: [`${gateway}/32`] }), ["reached:open", "blocked"]);
      // Not listed: blocked, although the operator allows it.
      assert.deepEqual(await probe(allowing, "ega-other", urls, { allow: ["198.51.100.0/24:443"] }), ["blocked", "blocked"]);
      assert.deepEqual(await probe(allowing, "ega-block", urls, { block: true }), ["blocked", "blocked"]);
    });

    test("a firewall reload that flushes our jumps is undone, and running containers keep their own policies", async () => {
      const handle = await allowing.runtime.start(spec(allowing, "ega-reload", ["sleep", "60"], { egress: { block: true } }), () => {});
      try {
        const jump = ["FORWARD", "-i", `b9br-${allowing.name}`, "-j", allowing.names.forwardChain];
        iptables("-D", ...jump); // what `ufw reload` or `iptables -F` would do
        const deadline = Date.now() + 30_000;
        while (spawnSync("iptables", ["-w", "-C", ...jump]).status !== 0) {
          assert.ok(Date.now() < deadline, "the jump came back");
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.match(iptables("-S", allowing.names.containersChain), new RegExp(`-j ${allowing.names.containerChainPrefix}[0-9A-F]{8}`), "the container's policy survived");
        // Every packet a container sends meets its own chain before any "established" shortcut.
        const fwd = iptables("-S", allowing.names.forwardChain).trim().split("\n");
        const ctr = fwd.findIndex((l) => l.endsWith(`-j ${allowing.names.containersChain}`));
        const established = fwd.findIndex((l) => l.includes("ESTABLISHED") && !l.includes(" -o "));
        assert.ok(ctr > 0 && ctr < established, fwd.join("\n"));
      } finally {
        await handle.stop(500);
      }
    });

    test("a container's own chain exists while it runs and is gone after it", async () => {
      const handle = await allowing.runtime.start(spec(allowing, "ega-chain", ["sleep", "30"], { egress: { allow: ["198.51.100.7/32:8000-8100"] } }), () => {});
      try {
        const rules = iptables("-S");
        const chain = new RegExp(`^-A ${allowing.names.containersChain} -s ([\\d.]+)/32 -j (${allowing.names.containerChainPrefix}[0-9A-F]{8})$`, "m").exec(rules);
        assert.ok(chain, rules);
        const own = iptables("-S", chain[2]!);
        assert.ok(own.includes(`-d 198.51.100.7/32 -p tcp -m tcp --dport 8000:8100 -j RETURN`), own);
        assert.ok(own.includes(`-d 198.51.100.7/32 -p udp -m udp --dport 8000:8100 -j RETURN`), own);
        assert.ok(own.trim().endsWith(`-A ${chain[2]} -j REJECT --reject-with icmp-admin-prohibited`), own);
        assert.ok(own.includes(`-A ${chain[2]} -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN`), "replies to the host pass; its own old flows do not");
      } finally {
        await handle.stop(500);
      }
      assert.doesNotMatch(iptables("-S"), new RegExp(`^-N ${allowing.names.containerChainPrefix}[0-9A-F]{8}$`, "m"));
    });
  });

  test("leaves the host as it found it (filter chains and jumps included)", () => {
    rootfs.remove();
    rmSync(stateRoot, { recursive: true, force: true });
    const names = runtimes.map((t) => t.name);
    assert.equal(names.length, 2);
    assert.deepEqual(ownedBy(captureHostState(), names, [stateRoot]), ownedBy(hostBefore, names, [stateRoot]));
  });
}
