import assert from "node:assert/strict";
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findDebianMirror, parseDeb822, parseOneLine } from "./apt-sources.js";
import { ensureBaseImage } from "./base.js";
import { run } from "../exec.js";
import { mountsUnder } from "./mounts.js";
import { mountPacked, packRootfs, unmountPacked } from "./pack.js";
import { tempDir } from "./testing.js";

let work: Awaited<ReturnType<typeof tempDir>>;
before(async () => (work = await tempDir("base")));
after(async () => work?.cleanup());

describe("apt sources", () => {
  it("reads deb822 and one-line sources and picks the suite's mirror", async () => {
    const deb822 = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
    assert.deepEqual(parseDeb822(deb822).map((s) => s.uris[0]), ["http://mirror.example/debian", "http://mirror.example/debian-security"]);
    assert.deepEqual(parseOneLine("deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n# deb http://x y z\n"), [{ types: ["deb"], uris: ["http://m.example/debian"], suites: ["bookworm"] }]);
    const apt = join(work.path, "apt");
    await mkdir(join(apt, "sources.list.d"), { recursive: true });
    await writeFile(join(apt, "sources.list.d", "debian.sources"), deb822);
    assert.equal(await findDebianMirror("bookworm", apt), "http://mirror.example/debian");
    await assert.rejects(findDebianMirror("trixie", apt), /no apt source for Debian trixie/);
  });
});

describe("default base image", () => {
  it("leaves nothing behind when the build fails", async () => {
    const cacheDir = join(work.path, "failed");
    // A closed loopback port: debootstrap fails at its first download.
    await assert.rejects(ensureBaseImage({ cacheDir, mirror: "http://127.0.0.1:9/debian", version: "broken" }));
    assert.deepEqual(await readdir(cacheDir), []);
    assert.deepEqual(await mountsUnder(cacheDir), []);
  });

  it("debootstraps bookworm with python3 once, then serves it from the cache", async (t) => {
    const cacheDir = join(work.path, "cache");
    const lines: string[] = [];
    const started = performance.now();
    const [one, two] = await Promise.all([
      ensureBaseImage({ cacheDir, onProgress: (l) => lines.push(l) }),
      ensureBaseImage({ cacheDir, onProgress: (l) => lines.push(l) }),
    ]);
    const buildMs = performance.now() - started;
    assert.equal(one.rootfs, two.rootfs);
    assert.equal(one.cached, false);
    assert.equal(lines.filter((l) => l.includes("debootstrap --variant=minbase")).length, 1, "one build for two callers");
    assert.ok((await stat(join(one.rootfs, "usr/bin/python3"))).isFile() || (await stat(join(one.rootfs, "usr/bin/python3"))).isSymbolicLink());
    assert.deepEqual(await mountsUnder(cacheDir), [], "proc is unmounted");
    assert.deepEqual((await readdir(cacheDir)).filter((n) => n.startsWith(".build-")), []);
    assert.deepEqual(await readdir(join(one.rootfs, "var/cache/apt/archives")).then((f) => f.filter((n) => n.endsWith(".deb"))), []);
    const version = await run("chroot", [one.rootfs, "python3", "-c", "import sys; print(sys.version_info[:2])"]);
    assert.match(version, /\(3, 11\)/);

    const again = await ensureBaseImage({ cacheDir });
    assert.equal(again.cached, true);
    assert.equal(again.rootfs, one.rootfs);

    const packed = await packRootfs(one.rootfs, join(work.path, "base.sqfs"));
    const mountStarted = performance.now();
    const mountPoint = await mountPacked(packed.path, join(work.path, "mnt"));
    const mountMs = performance.now() - mountStarted;
    try {
      assert.ok((await readdir(join(mountPoint, "usr/bin"))).includes("python3"));
    } finally {
      await unmountPacked(mountPoint);
    }
    const rootBytes = Number((await run("du", ["-sb", one.rootfs])).split("\t")[0]);
    t.diagnostic(`build ${(buildMs / 1000).toFixed(1)} s; rootfs ${(rootBytes / 1e6).toFixed(0)} MB; squashfs-zstd3 pack ${packed.ms.toFixed(0)} ms → ${(packed.bytes / 1e6).toFixed(1)} MB; mount ${mountMs.toFixed(0)} ms`);
  });
});
