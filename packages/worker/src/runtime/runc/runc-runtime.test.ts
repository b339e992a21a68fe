import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { waitForHttp200 } from "../../testing/http.js";
import { captureHostState, ownedBy, type HostState } from "../../testing/host-state.js";
import { createHostRootfs, snapshotTree, type HostRootfs } from "../../testing/rootfs.js";
import { expectedCpuWeight, makeStateRoot, makeTestRuntime, readCgroupView, runcLeftovers, runcSkipReason, type TestRuntime } from "../../testing/runc-fixtures.js";
import { cpuShares } from "./bundle.js";
import { runRuntimeConformance } from "../conformance.js";
import type { ContainerSpec, LogStream } from "../types.js";

const skipReason = runcSkipReason();

if (skipReason) {
  test("runc runtime", { skip: skipReason }, () => {});
} else {
  const hostBefore: HostState = captureHostState();
  const stateRoot = makeStateRoot();
  const rootfs: HostRootfs = createHostRootfs();
  let conformanceRuntime: TestRuntime | undefined;
  let isolationRuntime: TestRuntime | undefined;

  runRuntimeConformance(
    "runc",
    () => (conformanceRuntime = makeTestRuntime("cf", stateRoot)).runtime,
    () => ({ lowerDirs: [rootfs.lowerDir], mounts: rootfs.mounts }),
    { leftovers: (id) => runcLeftovers(conformanceRuntime!, id) },
  );

  describe("runc runtime: isolation and limits", { timeout: 180_000 }, () => {
    let t: TestRuntime;
    before(() => {
      t = isolationRuntime = makeTestRuntime("iso", stateRoot);
    });
    after(async () => {
      await t.runtime.close(500);
      await t.runtime.reap();
    });

    /** Runs a container to completion and returns its exit and logs. */
    const runToExit = async (id: string, command: string[], overrides: Partial<ContainerSpec> = {}) => {
      const logs: Record<LogStream, string[]> = { stdout: [], stderr: [] };
      const handle = await t.runtime.start(baseSpec(id, command, overrides), (stream, line) => logs[stream].push(line));
      const exit = await handle.exited;
      assert.deepEqual(runcLeftovers(t, id), [], "everything released");
      return { exit, ...logs };
    };
    const baseSpec = (id: string, command: string[], overrides: Partial<ContainerSpec>): ContainerSpec => ({
      id,
      lowerDirs: [rootfs.lowerDir],
      mounts: rootfs.mounts,
      command,
      env: {},
      cpuMillicores: 1000,
      memoryMiB: 256,
      ...overrides,
    });

    test("a memory hog over its 64 MiB limit ends with reason 'oom'", async () => {
      const hog = "a=[]\nwhile True: a.append(b'x' * (1 << 20))";
      const { exit } = await runToExit("iso-oom", ["python3", "-c", hog], { memoryMiB: 64 });
      assert.equal(exit.reason, "oom", JSON.stringify(exit));
      assert.equal(exit.exitCode, 137);
    });

    test("a start-up burst: one CPU until the first 'runner ready:' line, then exactly its own share", async () => {
      const logs: string[] = [];
      const command = ["sh", "-c", "sleep 0.3; echo runner ready: test; exec sleep 30"];
      const handle = await t.runtime.start(baseSpec("iso-burst", command, { cpuMillicores: 250, startupBurstMillicores: 1000 }), (_s, line) => logs.push(line));
      try {
        assert.equal(readCgroupView(t, "iso-burst").cpuMax, "100000 100000", "starts on one CPU");
        assert.equal(readCgroupView(t, "iso-burst").cpuWeight, expectedCpuWeight(cpuShares(250)), "with the weight of its own share: a burst takes idle CPU only");
        while (!logs.some((line) => line.startsWith("runner ready:"))) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(readCgroupView(t, "iso-burst").cpuMax, "25000 100000", "its own share once ready");
      } finally {
        await handle.stop(0);
      }
      // Without a burst, the share from the start.
      const plain = await t.runtime.start(baseSpec("iso-noburst", ["sleep", "30"], { cpuMillicores: 250 }), () => undefined);
      try {
        assert.equal(readCgroupView(t, "iso-noburst").cpuMax, "25000 100000");
        assert.equal(readCgroupView(t, "iso-noburst").cpuWeight, expectedCpuWeight(256));
      } finally {
        await plain.stop(0);
      }
    });

    test("cpuMillicores 500 holds a busy loop to about half a core", async () => {
      const logs: string[] = [];
      const busy = "const t0=Date.now();while(Date.now()-t0<2000);console.log('busy-done '+(Date.now()-t0));setTimeout(()=>{},10000)";
      const handle = await t.runtime.start(baseSpec("iso-cpu", ["node", "-e", busy], { cpuMillicores: 500 }), (_s, line) => logs.push(line));
      const limits = readCgroupView(t, "iso-cpu");
      assert.equal(limits.cpuMax, "50000 100000");
      assert.equal(limits.memoryMaxBytes, 256 * 1024 * 1024);
      assert.equal(limits.pidsMax, "1024");
      while (!logs.some((line) => line.startsWith("busy-done"))) await new Promise((resolve) => setTimeout(resolve, 20));
      const usedSeconds = readCgroupView(t, "iso-cpu").cpuSeconds;
      const wallSeconds = Number(logs.find((line) => line.startsWith("busy-done"))!.split(" ")[1]) / 1000;
      const share = usedSeconds / wallSeconds;
      assert.ok(share > 0.25 && share < 0.75, `used ${usedSeconds.toFixed(2)} s of CPU in ${wallSeconds.toFixed(2)} s (${share.toFixed(2)} of a core)`);
      assert.equal((await handle.stop(200)).reason, "stopped");
    });

    test("a fork bomb is contained by pidsLimit and the host stays responsive", async () => {
      const bomb = "bomb() { bomb | bomb & }; bomb; exec sleep 60";
      const handle = await t.runtime.start(baseSpec("iso-bomb", ["sh", "-c", bomb], { pidsLimit: 64 }), () => {});
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const { pidsCurrent: current, pidsRefused: refusals } = readCgroupView(t, "iso-bomb");
      const began = Date.now();
      const probe = spawnSync("true");
      const hostForkMs = Date.now() - began;
      assert.ok(current <= 64, `pids.current ${current} <= 64`);
      assert.ok(refusals > 0, "the limit refused forks");
      assert.equal(probe.status, 0);
      assert.ok(hostForkMs < 2_000, `the host can still fork (${hostForkMs} ms)`);
      assert.equal((await handle.stop(300)).reason, "stopped");
      assert.deepEqual(runcLeftovers(t, "iso-bomb"), []);
    });

    test("no privileges: mount, ip link add, modules, /proc/sys writes, namespaces all fail", async () => {
      const script = [
        "mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=denied",
        "ip link add b9dummy type dummy 2>/dev/null && echo iplink=ok || echo iplink=denied",
        "(echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo procsys=ok || echo procsys=denied",
        "unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=denied",
        "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status | tr -d '\\t '",
        `python3 -c "${SYSCALL_PROBES}"`,
      ].join("\n");
      const { exit, stdout } = await runToExit("iso-priv", ["sh", "-c", script]);
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      const results = Object.fromEntries(stdout.map((line) => line.split(/[=:]/, 2) as [string, string]));
      assert.equal(results.mount, "denied");
      assert.equal(results.iplink, "denied");
      assert.equal(results.procsys, "denied");
      assert.equal(results.unshare, "denied");
      assert.equal(results.NoNewPrivs, "1");
      assert.equal(results.Seccomp, "2");
      const capEff = BigInt(`0x${results.CapEff}`);
      for (const [cap, bit] of Object.entries({ SYS_ADMIN: 21, NET_ADMIN: 12, NET_RAW: 13, SYS_MODULE: 16, SYS_PTRACE: 19, SYS_TIME: 25 })) {
        assert.equal((capEff >> BigInt(bit)) & 1n, 0n, `CapEff has no CAP_${cap}`);
      }
      if (process.arch === "x64") {
        for (const probe of ["finit_module", "init_module", "delete_module", "clone_newuser", "bpf", "personality_no_aslr", "keyctl"]) {
          assert.equal(results[probe], "EPERM", `${probe}: ${results[probe]}`);
        }
        assert.equal(results.personality_query, "ok", "querying the personality is allowed");
        assert.equal(results.fork, "ok", "a plain fork is allowed");
      }
    });

    test("the host's files outside the given mounts are not visible; hostname is the id", async () => {
      const secret = `/tmp/b9-secret-${randomBytes(4).toString("hex")}`;
      writeFileSync(secret, "host only");
      try {
        const script = `test -e ${secret} && echo secret=visible || echo secret=absent; test -e /work && echo work=visible || echo work=absent; echo host=$(hostname)`;
        const { stdout } = await runToExit("iso-fs", ["sh", "-c", script]);
        assert.deepEqual(stdout, ["secret=absent", "work=absent", "host=iso-fs"]);
      } finally {
        rmSync(secret, { force: true });
      }
    });

    test("the lower dirs are unchanged after the container writes everywhere it can", async () => {
      const before = snapshotTree(rootfs.lowerDir);
      const dirs = "/ /etc /tmp /root /var /run /usr /usr/bin /bin /lib /dev /proc/sys /sys";
      const script = [
        `for d in ${dirs}; do (echo x > $d/b9-written) 2>/dev/null && echo "wrote $d"; done`,
        "rm -f /etc/passwd && echo removed-passwd",
        "echo extra >> /etc/group && chmod 700 /tmp && mkdir -p /new/dir && ln -s /etc /etc-link && echo changed-more",
      ].join("\n");
      const { stdout } = await runToExit("iso-lower", ["sh", "-c", script]);
      assert.ok(stdout.includes("wrote /") && stdout.includes("wrote /etc") && stdout.includes("removed-passwd"), stdout.join(","));
      assert.ok(!stdout.includes("wrote /usr") && !stdout.includes("wrote /usr/bin"), "the /usr bind is read-only");
      assert.deepEqual(snapshotTree(rootfs.lowerDir), before);
      assert.equal(existsSync("/usr/b9-written"), false);
    });

    test("network 'bridge' gives eth0 an address in the subnet and a default route via the bridge", async () => {
      // (no awk: the rootfs has /usr but not /etc/alternatives, which awk's symlink points into)
      const { stdout } = await runToExit("iso-net", ["sh", "-c", "ip -4 -o addr show dev eth0; ip -4 route show default"]);
      const prefix = t.subnet.split(".").slice(0, 3).join(".");
      assert.match(stdout[0] ?? "", new RegExp(`inet ${prefix.replace(/\./g, "\\.")}\\.\\d+/24 `));
      assert.match(stdout[1] ?? "", new RegExp(`^default via ${prefix.replace(/\./g, "\\.")}\\.1 dev eth0`));
    });

    test("a bridged container does not reach the host through the gateway (runc-egress.test.ts has the rest), and egress is masqueraded", async () => {
      const server = createServer((_req, res) => res.end("from host"));
      await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
      try {
        const port = (server.address() as AddressInfo).port;
        const gateway = `${t.subnet.split(".").slice(0, 3).join(".")}.1`;
        const fetchHost = `fetch('http://${gateway}:${port}/', { signal: AbortSignal.timeout(1500) }).then(r=>r.text()).then(b=>console.log(b), () => console.log('blocked'))`;
        const { exit, stdout } = await runToExit("iso-egress", ["node", "-e", fetchHost]);
        assert.equal(exit.exitCode, 0, JSON.stringify(exit));
        assert.deepEqual(stdout, ["blocked"]);
        const chain = execFileSync("iptables", ["-w", "-t", "nat", "-S", t.names.postroutingChain], { encoding: "utf8" });
        assert.ok(chain.includes(`-A ${t.names.postroutingChain} -s ${t.subnet} ! -o b9br-${t.name} -j MASQUERADE`), chain);
      } finally {
        server.close();
      }
    });

    test("bridged containers cannot reach each other, while the host reaches both", async () => {
      const serve = "require('http').createServer((q, r) => r.end('peer')).listen(8080, () => console.log('listening'))";
      const peer = await t.runtime.start(baseSpec("iso-peer", ["node", "-e", serve], { ports: [8080] }), () => {});
      try {
        const address = peer.ports[8080]!;
        const fromHost = (await waitForHttp200(address)).body;
        assert.equal(fromHost, "peer", "the host (gateway side) reaches the container");
        const probe = `fetch('http://${address.host}:8080/', { signal: AbortSignal.timeout(1500) })` +
          ".then(r => r.text()).then(b => console.log('reached:' + b), e => console.log('blocked'))";
        const { stdout } = await runToExit("iso-peer-probe", ["node", "-e", probe]);
        assert.deepEqual(stdout, ["blocked"], "another container on the bridge must not reach it");
      } finally {
        await peer.stop(1000);
      }
      assert.deepEqual(runcLeftovers(t, "iso-peer"), []);
    });

    test("network 'none' has only lo, and devices are passed through", async () => {
      const device = ["/dev/kvm", "/dev/fuse", "/dev/net/tun"].find((path) => existsSync(path));
      const script = `ls /sys/class/net; ${device ? `test -c ${device} && echo device=present` : "echo device=present"}; test -e /dev/vda && echo vda=present || echo vda=absent`;
      const { stdout } = await runToExit("iso-none", ["sh", "-c", script], { network: "none", devices: device ? [device] : [] });
      assert.deepEqual(stdout, ["lo", "device=present", "vda=absent"]);
    });

    test("an invalid spec is refused before anything is created", async () => {
      await assert.rejects(t.runtime.start(baseSpec("iso-bad", ["true"], { lowerDirs: [] }), () => {}), /lowerDirs is empty/);
      await assert.rejects(t.runtime.start(baseSpec("Bad_Id", ["true"], {}), () => {}), /invalid id/);
      assert.deepEqual(runcLeftovers(t, "iso-bad"), []);
    });
  });

  test("leaves the host as it found it (netns, veths, bridges, overlay mounts, runc, nat table, cgroups)", () => {
    rootfs.remove();
    rmSync(stateRoot, { recursive: true, force: true });
    const names = [conformanceRuntime?.name, isolationRuntime?.name].filter((name): name is string => name !== undefined);
    assert.equal(names.length, 2);
    assert.deepEqual(ownedBy(captureHostState(), names, [stateRoot]), ownedBy(hostBefore, names, [stateRoot]));
  });
}


/** Python probes of syscalls the seccomp profile denies (x86_64 numbers), printing name=EPERM|ok|ERRNAME. */
const SYSCALL_PROBES = [
  "import ctypes, os, errno",
  "libc = ctypes.CDLL(None, use_errno=True)",
  "libc.syscall.restype = ctypes.c_long",
  "def probe(name, nr, *args):",
  "    r = libc.syscall(nr, *args)",
  "    if r == 0 and name in ('clone_newuser', 'fork'): os._exit(0)",
  "    if r > 0 and name in ('clone_newuser', 'fork'): os.waitpid(r, 0)",
  "    print(name + '=' + ('ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')))",
  "probe('finit_module', 313, -1, b'', 0)",
  "probe('init_module', 175, None, 0, b'')",
  "probe('delete_module', 176, b'dummy', 0)",
  "probe('clone_newuser', 56, 0x10000000 | 17, 0, 0, 0, 0)",
  "probe('fork', 56, 17, 0, 0, 0, 0)",
  "probe('bpf', 321, 0, None, 0)",
  "probe('personality_no_aslr', 135, 0x0040000)",
  "probe('personality_query', 135, 0xffffffff)",
  "probe('keyctl', 250, 0, 0, 0, 0, 0)",
].join("\n");
