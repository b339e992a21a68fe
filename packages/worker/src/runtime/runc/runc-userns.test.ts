/**
 * User namespaces and the writable-layer bound, against real runc: container root is an
 * unprivileged host uid, image files and binds still look like root's inside, the container's
 * writes are bounded by its own disk, and every mount it gets is nosuid,nodev.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { captureHostState, ownedBy, type HostState } from "../../testing/host-state.js";
import { createHostRootfs, type HostRootfs } from "../../testing/rootfs.js";
import { makeStateRoot, makeTestRuntime, runcLeftovers, runcSkipReason, type TestRuntime } from "../../testing/runc-fixtures.js";
import type { ContainerSpec, LogStream } from "../types.js";
import { DEFAULT_USERNS_HOST_ID, USERNS_SIZE } from "./runc-runtime.js";

const skipReason = runcSkipReason();
const LAYER_MIB = 64;

if (skipReason) {
  test("runc user namespaces", { skip: skipReason }, () => {});
} else {
  const hostBefore: HostState = captureHostState();
  const stateRoot = makeStateRoot();
  const rootfs: HostRootfs = createHostRootfs();
  const volume = mkdtempSync(join(tmpdir(), "b9-userns-vol-"));
  const runtimes: TestRuntime[] = [];

  describe("runc: user namespace and bounded writable layer", { timeout: 180_000 }, () => {
    let t: TestRuntime;
    before(() => {
      t = makeTestRuntime("un", stateRoot, () => ({ writableLayerMiB: LAYER_MIB }));
      runtimes.push(t);
    });
    after(async () => {
      for (const runtime of runtimes) {
        await runtime.runtime.close(500);
        await runtime.runtime.reap();
      }
    });

    const spec = (id: string, command: string[], overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
      id,
      lowerDirs: [rootfs.lowerDir],
      mounts: [...rootfs.mounts, { source: volume, destination: "/vol", readOnly: false }],
      command,
      env: {},
      cpuMillicores: 1000,
      memoryMiB: 256,
      ...overrides,
    });
    const runToExit = async (runtime: TestRuntime, id: string, command: string[], overrides: Partial<ContainerSpec> = {}) => {
      const logs: Record<LogStream, string[]> = { stdout: [], stderr: [] };
      const handle = await runtime.runtime.start(spec(id, command, overrides), (stream, line) => logs[stream].push(line));
      const exit = await handle.exited;
      assert.deepEqual(runcLeftovers(runtime, id), [], "everything released");
      return { exit, ...logs };
    };

    test("container root is an unprivileged host uid: /proc/self/uid_map maps 0 to the worker's range", async () => {
      const { exit, stdout } = await runToExit(t, "un-map", ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"]);
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      const [uidMap, gidMap, uid] = stdout.map((line) => line.trim().split(/\s+/).map(Number));
      assert.deepEqual(uidMap, [0, DEFAULT_USERNS_HOST_ID, USERNS_SIZE]);
      assert.deepEqual(gidMap, [0, DEFAULT_USERNS_HOST_ID, USERNS_SIZE]);
      assert.deepEqual(uid, [0], "root inside");
      assert.notEqual(uidMap![1], 0, "not host root");
    });

    test("the host sees the container's processes as the mapped uid, not root", async () => {
      const handle = await t.runtime.start(spec("un-ps", ["sleep", "30"]), () => {});
      try {
        const status = readFileSync(`/proc/${handle.pid}/status`, "utf8");
        const uids = /^Uid:\s+(.*)$/m.exec(status)![1]!.split(/\s+/).map(Number);
        assert.deepEqual(uids, [DEFAULT_USERNS_HOST_ID, DEFAULT_USERNS_HOST_ID, DEFAULT_USERNS_HOST_ID, DEFAULT_USERNS_HOST_ID]);
      } finally {
        await handle.stop(0);
      }
    });

    test("image files and binds owned by host root are root's inside; root writes /etc, binds port 80", async () => {
      const script = [
        "stat -c '%U %n' / /etc/passwd /usr/bin/env /vol",
        "echo x > /etc/written && echo etc=ok",
        `python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 80)); print("bind80=ok")'`,
      ].join("; ");
      const { exit, stdout, stderr } = await runToExit(t, "un-own", ["sh", "-c", script], { ports: [8000] });
      assert.equal(exit.exitCode, 0, stderr.join("\n"));
      assert.deepEqual(stdout, ["root /", "root /etc/passwd", "root /usr/bin/env", "root /vol", "etc=ok", "bind80=ok"]);
    });

    test("a file container root creates in a bound host dir is owned by uid 0 on disk (idmapped bind), never by the container's host uid", async () => {
      writeFileSync(join(volume, "from-host"), "host\n", { mode: 0o600 });
      const { exit, stdout, stderr } = await runToExit(t, "un-vol", ["sh", "-c", "cat /vol/from-host && echo c > /vol/from-container && mkdir /vol/d"]);
      assert.equal(exit.exitCode, 0, stderr.join("\n"));
      assert.deepEqual(stdout, ["host"], "a host root 0600 file is readable by container root");
      for (const name of ["from-container", "d"]) {
        const owner = statSync(join(volume, name));
        assert.deepEqual([owner.uid, owner.gid], [0, 0], `${name}: canonical owner on disk`);
      }
    });

    test("a bound overlay (how volumes are mounted; overlayfs cannot be idmapped) is bound as it is: container root's files are the mapped uid's on the host", async () => {
      const base = mkdtempSync(join(tmpdir(), "b9-userns-ovl-"));
      const [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map((name) => join(base, name));
      for (const dir of [lower, upper, work, merged]) mkdirSync(dir!);
      execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged!]);
      try {
        chownSync(merged!, DEFAULT_USERNS_HOST_ID, DEFAULT_USERNS_HOST_ID); // as the worker's volume code does
        const { exit, stderr } = await runToExit(t, "un-ovl", ["sh", "-c", "echo v > /data/f"], {
          mounts: [...rootfs.mounts, { source: merged!, destination: "/data", readOnly: false }],
        });
        assert.equal(exit.exitCode, 0, stderr.join("\n"));
        assert.equal(statSync(join(merged!, "f")).uid, DEFAULT_USERNS_HOST_ID);
      } finally {
        execFileSync("umount", [merged!]);
        rmSync(base, { recursive: true, force: true });
      }
    });

    test(`the writable layer is bounded: writing past ${LAYER_MIB} MiB fails with ENOSPC inside, and the host holds at most the bound`, async () => {
      const logs: string[] = [];
      const write = `dd if=/dev/zero of=/big bs=1M count=${LAYER_MIB * 3} 2>&1; echo rc=$?; echo done; exec sleep 30`;
      const handle = await t.runtime.start(spec("un-fill", ["sh", "-c", write]), (_stream, line) => logs.push(line));
      try {
        while (!logs.includes("done")) await new Promise((resolve) => setTimeout(resolve, 20));
        assert.ok(logs.some((line) => /No space left on device/.test(line)), logs.join("\n"));
        assert.ok(logs.includes("rc=1"), logs.join("\n"));
        // The layer's only host footprint is its disk image, a sparse file of the bound's size.
        const image = statSync(join(t.names.containerDir("un-fill"), "disk.img"));
        assert.ok(image.blocks * 512 <= LAYER_MIB * 1024 * 1024, `image holds ${image.blocks * 512} bytes`);
        assert.ok(image.blocks * 512 > (LAYER_MIB / 2) * 1024 * 1024, "the writes landed in the image");
      } finally {
        await handle.stop(0);
      }
      assert.deepEqual(runcLeftovers(t, "un-fill"), [], "the disk and its image go with the container");
    });

    test("an image build step (kept upper dir) runs in the user namespace, and its layer records the image's owners, not the shifted ones", async () => {
      const keep = mkdtempSync(join(tmpdir(), "b9-userns-layer-"));
      const upperDir = join(keep, "layer");
      try {
        const script = "cat /proc/self/uid_map; mkdir /app && touch /app/f && chown 1000:1000 /app/f && cp /usr/bin/env /s && chmod 4755 /s";
        const { exit, stdout, stderr } = await runToExit(t, "un-build", ["sh", "-c", script], { upperDir, mounts: rootfs.mounts });
        assert.equal(exit.exitCode, 0, stderr.join("\n"));
        assert.deepEqual(stdout[0]!.trim().split(/\s+/).map(Number), [0, DEFAULT_USERNS_HOST_ID, USERNS_SIZE]);
        const owner = (path: string) => { const st = statSync(join(upperDir, path)); return [st.uid, st.gid]; };
        assert.deepEqual([owner("."), owner("app"), owner("app/f"), owner("s")], [[0, 0], [0, 0], [1000, 1000], [0, 0]]);
        assert.equal(statSync(join(upperDir, "s")).mode & 0o7777, 0o4755, "setuid survives the shift back");
      } finally {
        rmSync(keep, { recursive: true, force: true });
      }
    });

    test("the root overlay and every bind are nosuid,nodev; no device node can be made", async () => {
      const handle = await t.runtime.start(spec("un-mnt", ["sleep", "30"]), () => {});
      try {
        const mounts = readFileSync(`/proc/${handle.pid}/mountinfo`, "utf8").split("\n").filter(Boolean);
        const byPoint = (point: string) => mounts.find((line) => line.split(" ")[4] === point) ?? "";
        for (const point of ["/", "/usr", "/vol", "/etc/hosts"]) {
          const options = byPoint(point).split(" ")[5] ?? "";
          assert.match(options, /nosuid/, `${point}: ${byPoint(point)}`);
          assert.match(options, /nodev/, `${point}: ${byPoint(point)}`);
        }
      } finally {
        await handle.stop(0);
      }
      const { stdout } = await runToExit(t, "un-mknod", ["sh", "-c", "mknod /dev/x c 1 3 2>/dev/null && echo made || echo refused"]);
      assert.deepEqual(stdout, ["refused"]);
    });

    test("--userns=false: container root is host root again (the opt-out), the bound still applies", async () => {
      const off = makeTestRuntime("uo", stateRoot, () => ({ userns: false, writableLayerMiB: LAYER_MIB }));
      runtimes.push(off);
      const { exit, stdout } = await runToExit(off, "uo-map", ["sh", "-c", "cat /proc/self/uid_map; df -m / | tail -1"]);
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      assert.deepEqual(stdout[0]!.trim().split(/\s+/).map(Number), [0, 0, 2 ** 32 - 1]);
      const sizeMiB = Number(stdout[1]!.trim().split(/\s+/)[1]);
      assert.ok(sizeMiB > 0 && sizeMiB <= LAYER_MIB, `root fs of ${sizeMiB} MiB`);
    });
  });

  test("leaves the host as it found it (netns, veths, bridges, overlay mounts, runc, nat table, cgroups)", () => {
    rootfs.remove();
    rmSync(volume, { recursive: true, force: true });
    rmSync(stateRoot, { recursive: true, force: true });
    const names = runtimes.map((runtime) => runtime.name);
    assert.deepEqual(ownedBy(captureHostState(), names, [stateRoot]), ownedBy(hostBefore, names, [stateRoot]));
  });
}
