/** Unit tests of the runc runtime's pure parts (no root needed). */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parseEgressRule } from "@beta9/protocol";
import { buildConfig, CONTAINER_CAPABILITIES } from "./bundle.js";
import { baseChainsScript, containerPolicyScript, hostNameservers } from "./egress.js";
import { RuntimeNames } from "./names.js";
import { subidCollisions } from "./mount-helper.js";
import { macForIp } from "./network.js";
import { lowerdirOption } from "./overlay.js";
import { defaultSeccompProfile, DENIED_SYSCALLS } from "./seccomp.js";
import { ALLOWED_SYSCALLS } from "./seccomp-allowed.js";
import { AddressPool, parseSubnet } from "./subnet.js";

test("names: every host object carries the runtime name; veths fit in 15 chars; prefixes never overlap", () => {
  const names = new RuntimeNames("abcdefgh", "/state");
  assert.equal(names.defaultBridge, "b9br-abcdefgh");
  assert.equal(names.netns("ct-1"), "b9-abcdefgh-ct-1");
  assert.equal(names.defaultCgroupParent, "/beta9/abcdefgh");
  assert.equal(names.postroutingChain, "B9-ABCDEFGH-POST");
  assert.equal(names.runcRoot, "/state/runc");
  for (let i = 0; i < 50; i++) {
    const veth = names.newVeth();
    assert.ok(veth.length <= 15 && veth.startsWith("b9abcdefgh-"), veth);
  }
  assert.ok(!new RuntimeNames("abc", "/s").newVeth().startsWith(new RuntimeNames("ab", "/s").vethPrefix));
  assert.throws(() => new RuntimeNames("Bad-Name", "/s"), /invalid runtime name/);
  assert.throws(() => new RuntimeNames("toolongname", "/s"), /invalid runtime name/);
});

test("subnet: gateway is .1, addresses from .2 up, released ones reused, exhaustion is an error", () => {
  const subnet = parseSubnet("10.219.3.77/29");
  assert.equal(subnet.cidr, "10.219.3.72/29");
  assert.equal(subnet.gateway, "10.219.3.73");
  const pool = new AddressPool(subnet);
  const taken = Array.from({ length: 5 }, () => pool.allocate());
  assert.deepEqual(taken, ["10.219.3.74", "10.219.3.75", "10.219.3.76", "10.219.3.77", "10.219.3.78"]);
  assert.throws(() => pool.allocate(), /no free address/);
  pool.release("10.219.3.75");
  assert.equal(pool.allocate(), "10.219.3.75");
  assert.throws(() => parseSubnet("10.0.0.0"), /invalid subnet/);
  assert.throws(() => parseSubnet("10.0.0.300/24"), /invalid IPv4/);
});

test("the container MAC is derived from its IP, locally administered", () => {
  assert.equal(macForIp("10.219.0.2"), "02:b9:0a:db:00:02");
});

test("overlay lowerdir: spec order is lowest first, overlayfs wants topmost first", () => {
  assert.equal(lowerdirOption(["/", "/usr"]), "/usr:/");
  assert.throws(() => lowerdirOption([]), /empty/);
  assert.throws(() => lowerdirOption(["relative"]), /absolute/);
  assert.throws(() => lowerdirOption(["/a:b"]), /contains/);
});

test("config.json: limits, cgroup path, hostname, minimal capabilities, no_new_privs, read-only binds", () => {
  const config = buildConfig(
    { id: "ct1", lowerDirs: ["/"], command: ["node", "x.js"], env: { A: "1" }, cpuMillicores: 500, memoryMiB: 64, mounts: [{ source: "/usr", destination: "/usr", readOnly: true }] },
    { cgroupPath: "/beta9/w/ct1", netnsPath: "/var/run/netns/b9-w-ct1", etcFiles: { hosts: "/h", hostname: "/hn" }, limitSwap: true, extraEnv: { PORT: "8000" } },
  ) as any;
  assert.equal(config.hostname, "ct1");
  assert.equal(config.linux.cgroupsPath, "/beta9/w/ct1");
  assert.deepEqual(config.linux.resources.memory, { limit: 64 * 1024 * 1024, swap: 64 * 1024 * 1024 });
  assert.deepEqual(config.linux.resources.cpu, { period: 100000, quota: 50000, shares: 512 }, "a weight in proportion to the share");
  assert.deepEqual(config.linux.resources.pids, { limit: 1024 });
  assert.equal(config.process.noNewPrivileges, true);
  assert.equal(config.process.terminal, false);
  assert.ok(config.process.env.includes("PORT=8000") && config.process.env.includes("A=1"));
  assert.ok(config.process.env.some((entry: string) => entry.startsWith("PATH=")));
  for (const forbidden of ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_MKNOD"]) {
    assert.ok(!CONTAINER_CAPABILITIES.includes(forbidden), forbidden);
  }
  assert.deepEqual(config.process.capabilities.ambient, []);
  assert.ok(config.linux.maskedPaths.includes("/proc/kcore") && config.linux.readonlyPaths.includes("/proc/sys"));
  assert.deepEqual(config.linux.namespaces.find((ns: any) => ns.type === "network"), { type: "network", path: "/var/run/netns/b9-w-ct1" });
  const usr = config.mounts.find((mount: any) => mount.destination === "/usr");
  assert.deepEqual(usr.options, ["rbind", "ro", "nosuid", "nodev"]);
});

test("config.json with a user namespace: a user ns, 0 → the range for uids and gids, the root and sysfs the runtime mounted", () => {
  const spec = { id: "ct1", lowerDirs: ["/"], command: ["true"], env: {}, cpuMillicores: 0, memoryMiB: 64 };
  const base = { cgroupPath: "/beta9/w/ct1", netnsPath: "/var/run/netns/b9-w-ct1", etcFiles: { hosts: "/h", hostname: "/hn" }, limitSwap: false, extraEnv: {} };
  const config = buildConfig(spec, { ...base, userns: { hostId: 1_000_000_000, count: 65536 }, rootfs: "/run/beta9/w/ct1", sysfs: "/s/ct1/sys" }) as any;
  assert.equal(config.linux.namespaces[0].type, "user");
  const mapping = [{ containerID: 0, hostID: 1_000_000_000, size: 65536 }];
  assert.deepEqual([config.linux.uidMappings, config.linux.gidMappings], [mapping, mapping]);
  assert.equal(config.root.path, "/run/beta9/w/ct1");
  assert.deepEqual(config.mounts.find((mount: any) => mount.destination === "/sys"), {
    destination: "/sys", type: "bind", source: "/s/ct1/sys", options: ["rbind", "nosuid", "noexec", "nodev", "ro"],
  });
  // --userns=false: no user namespace, no mappings, runc's own sysfs.
  const off = buildConfig(spec, base) as any;
  assert.ok(!off.linux.namespaces.some((ns: any) => ns.type === "user"));
  assert.equal(off.linux.uidMappings, undefined);
  assert.equal(off.mounts.find((mount: any) => mount.destination === "/sys").type, "sysfs");
});

test("a user-namespace range overlapping /etc/subuid or /etc/subgid is named", () => {
  const dir = mkdtempSync(join(tmpdir(), "b9-subid-"));
  try {
    writeFileSync(join(dir, "subuid"), "alice:100000:65536\nbob:1000000000:10\n");
    assert.deepEqual(subidCollisions({ hostId: 1_000_000_000, count: 65536 }, [join(dir, "subuid")]), [`${join(dir, "subuid")}: bob:1000000000:10`]);
    assert.deepEqual(subidCollisions({ hostId: 165536, count: 65536 }, [join(dir, "subuid")]), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Evaluates the profile for one syscall: a matching ERRNO rule denies, else a matching ALLOW rule
 * allows, else the default (ERRNO). The profile's rules for one syscall never overlap, so the order
 * libseccomp would pick between them does not matter.
 */
function denied(name: string, arg0: number): boolean {
  const matching = defaultSeccompProfile("x64").syscalls.filter(
    (rule) =>
      rule.names.includes(name) &&
      (!rule.args || rule.args.some((cond) => (Number(BigInt(arg0) & BigInt(cond.value)) === cond.valueTwo))),
  );
  if (matching.some((rule) => rule.action === "SCMP_ACT_ERRNO")) return true;
  return !matching.some((rule) => rule.action === "SCMP_ACT_ALLOW");
}

test("seccomp: an allow-list; what programs use passes, a syscall it does not name (a newer one) gets ENOSYS", () => {
  const profile = defaultSeccompProfile("x64");
  assert.deepEqual([profile.defaultAction, profile.defaultErrnoRet], ["SCMP_ACT_ERRNO", 38]);
  for (const name of ["read", "write", "openat", "getdents64", "statx", "rseq", "close_range", "faccessat2", "epoll_pwait2", "getrandom", "memfd_create", "socket", "execve", "wait4", "futex", "mmap", "mprotect"]) {
    assert.equal(denied(name, 0), false, name);
  }
  for (const name of ["cachestat", "fchmodat2", "made_up_syscall", "io_uring_setup", "clone3"]) assert.equal(denied(name, 0), true, name);
  const allowed = new Set(ALLOWED_SYSCALLS);
  assert.deepEqual(DENIED_SYSCALLS.filter((name) => allowed.has(name)), [], "nothing both allowed and denied");
  assert.ok(!allowed.has("clone") && !allowed.has("personality"), "those two are allowed only with their argument checks");
});

test("seccomp: the deny list covers the brief, clone only with namespace flags, personality only non-default", () => {
  for (const name of ["mount", "umount2", "pivot_root", "kexec_load", "init_module", "finit_module", "delete_module", "bpf", "perf_event_open", "unshare", "setns", "swapon", "reboot", "keyctl", "add_key", "request_key", "open_by_handle_at", "userfaultfd", "clock_settime", "settimeofday", "acct", "quotactl", "iopl", "ioperm", "syslog", "fsopen", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev"]) {
    assert.ok(DENIED_SYSCALLS.includes(name), name);
  }
  assert.equal(denied("clone", 0x01200011), false, "fork-style clone (CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD)");
  assert.equal(denied("clone", 0x003d0f00), false, "pthread_create-style clone");
  assert.equal(denied("clone", 0x10000000 | 17), true, "CLONE_NEWUSER");
  assert.equal(denied("clone", 0x40000000), true, "CLONE_NEWNET");
  for (const allowed of [0, 8, 0x20000, 0x20008, 0xffffffff]) assert.equal(denied("personality", allowed), false, `personality ${allowed.toString(16)}`);
  for (const refused of [0x0040000, 0x0400000, 1, 0x80000000, 0xfffffffe]) assert.equal(denied("personality", refused), true, `personality ${refused.toString(16)}`);
  assert.equal(denied("read", 0), false);
});

test("egress: chain names fit iptables' 28 characters; scripts allow DNS and the operator's list, then refuse private ranges", () => {
  const names = new RuntimeNames("abcdefgh", "/state");
  assert.equal(names.containerChain("10.219.0.5"), "B9-ABCDEFGH-0ADB0005");
  for (const chain of [names.forwardChain, names.inputChain, names.containersChain, names.containerChain("255.255.255.255")]) {
    assert.ok(chain.length <= 28, chain);
  }
  const dir = mkdtempSync(join(tmpdir(), "b9-resolv-"));
  writeFileSync(join(dir, "resolv.conf"), "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fd00::1\nnameserver 10.255.255.53\n");
  const nameservers = hostNameservers(join(dir, "resolv.conf"));
  rmSync(dir, { recursive: true });
  assert.deepEqual(nameservers, ["10.255.255.53"], "loopback and IPv6 resolvers are useless inside a container");
  const config = { names, bridge: "b9br-abcdefgh", operatorAllow: [parseEgressRule("192.168.1.20:3128")], nameservers };
  const base = baseChainsScript(config).split("\n");
  const fwd = base.filter((line) => line.startsWith(`-A ${names.forwardChain} `));
  const at = (needle: string): number => fwd.findIndex((line) => line.includes(needle));
  assert.ok(at("--ctstate RELATED,ESTABLISHED -j ACCEPT") === 0, "replies first");
  assert.ok(at(`-j ${names.containersChain}`) < at("-d 192.168.1.20/32 -p tcp -m tcp --dport 3128 -j ACCEPT"), "a container's own policy before the operator's allowances");
  assert.ok(at("-d 10.255.255.53/32 -p udp -m udp --dport 53 -j ACCEPT") < at("-d 10.0.0.0/8 -j REJECT"), "DNS before the private ranges");
  assert.equal(fwd.at(-1), `-A ${names.forwardChain} -j ACCEPT`);
  const own = containerPolicyScript(config, "10.219.0.5", { allow: ["203.0.113.0/24"] });
  assert.match(own, /-A B9-ABCDEFGH-0ADB0005 -d 203\.0\.113\.0\/24 -j RETURN\n/);
  assert.match(own, /-A B9-ABCDEFGH-0ADB0005 -j REJECT --reject-with icmp-admin-prohibited\n-A B9-ABCDEFGH-CTR -s 10\.219\.0\.5\/32 -j B9-ABCDEFGH-0ADB0005\n/);
  // The worker parses a request's list again with the gateway's parser: a forged entry never reaches iptables.
  assert.throws(() => containerPolicyScript(config, "10.219.0.5", { allow: ["0.0.0.0/0 -j ACCEPT"] }), /IPv4 CIDR/);
});
