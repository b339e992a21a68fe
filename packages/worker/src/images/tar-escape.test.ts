/**
 * Layers that try to write outside the rootfs: the two shapes of the security finding (a pax
 * global header after a symlink layer; two pax headers where tar keeps the last), a size field
 * tar reads past a decoy header, and a seeded corpus of hostile archives. Each must be refused by
 * the header check, and, fed to the confined tar with no check at all, must still leave the
 * sentinel dir beside the rootfs untouched. Needs root (as all layer tests).
 */
import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CONFINED_TARGET, startConfinedTar } from "./confined-tar.js";
import { LayerRefusedError, applyLayers } from "./layers.js";
import { TarFormatError } from "./tar-list.js";
import { corpus, preludeLayer } from "./testing-tar-corpus.js";
import { leadingNulSize, pax, rawHeader, rawTar } from "./testing-tar.js";
import { tempDir } from "./testing.js";

const SEED = Number(process.env.BETA9_TAR_FUZZ_SEED ?? 20240607);
const FUZZ_CASES = 90;

let work: { path: string; cleanup: () => Promise<void> };
let n = 0;
before(async () => (work = await tempDir("tar-escape")));
after(async () => work.cleanup());

interface Scene {
  base: string;
  root: string;
  outside: string;
}

/** A fresh rootfs, and beside it a sentinel dir that must never change. */
async function scene(): Promise<Scene> {
  const base = join(work.path, `scene-${++n}`);
  await mkdir(join(base, "outside"), { recursive: true });
  await mkdir(join(base, "rootfs"));
  await writeFile(join(base, "outside", "keep"), "precious", { mode: 0o644 });
  return { base, root: join(base, "rootfs"), outside: join(base, "outside") };
}

/** What an escape could change: names beside the rootfs, the sentinel's entries, modes, owners and links. */
async function snapshot(s: Scene): Promise<string> {
  const dir = await stat(s.outside);
  const keep = await lstat(join(s.outside, "keep"));
  return JSON.stringify({
    beside: (await readdir(s.base)).sort(),
    outside: (await readdir(s.outside)).sort(),
    dir: [dir.mode, dir.uid, dir.gid],
    keep: [keep.mode, keep.uid, keep.gid, keep.nlink, keep.isFile(), await readFile(join(s.outside, "keep"), "utf8")],
  });
}

async function layerFile(bytes: Buffer): Promise<{ path: string }> {
  const path = join(work.path, `layer-${++n}.tar`);
  await writeFile(path, bytes);
  return { path };
}

/** Applies the prelude then `attack` through the checked path; returns the error, if any. */
async function applyChecked(s: Scene, attack: Buffer, prelude = preludeLayer(s.outside)): Promise<unknown> {
  return applyLayers(s.root, [await layerFile(prelude), await layerFile(attack)]).then(() => undefined, (err: unknown) => err);
}

/** Feeds `archive` to the confined tar as is: no header check, no cut at the end marker. */
async function extractUnchecked(root: string, archive: Buffer): Promise<unknown> {
  const tar = await startConfinedTar(root, ["-x", "-f", "-", "--numeric-owner", "--same-owner", "-p", "-C", CONFINED_TARGET]);
  tar.stdin.end(archive);
  return tar.done.then(() => undefined, (err: unknown) => err);
}

const isRefusal = (err: unknown): boolean => err instanceof LayerRefusedError || err instanceof TarFormatError;

describe("the finding's archive shapes", () => {
  it("refuses a pax global header whose path goes through a symlink from the layer below", async () => {
    const s = await scene();
    const before = await snapshot(s);
    const symlinkLayer = rawTar([{ name: "escape", type: "2", link: s.outside }]);
    const globalLayer = rawTar([
      { name: "pax_global_header", type: "g", data: pax({ path: "escape/authorized_keys" }) },
      { name: "harmless", data: "ssh-ed25519 AAAA attacker" },
    ]);
    const err = await applyChecked(s, globalLayer, symlinkLayer);
    assert.ok(err instanceof TarFormatError, `expected a refusal, got ${String(err)}`);
    assert.match(err.message, /global header sets "path"/);
    assert.equal(await snapshot(s), before);
  });

  it("refuses two pax headers for one entry, where tar would use only the last", async () => {
    const s = await scene();
    const before = await snapshot(s);
    const symlinkLayer = rawTar([{ name: "escape", type: "2", link: s.outside }]);
    const twoPax = rawTar([
      { name: "PaxHeaders/1", type: "x", data: pax({ path: "innocent" }) },
      { name: "PaxHeaders/2", type: "x", data: pax({ mtime: "1700000000" }) },
      { name: "escape/authorized_keys", data: "ssh-ed25519 AAAA attacker" },
    ]);
    const err = await applyChecked(s, twoPax, symlinkLayer);
    assert.ok(err instanceof TarFormatError, `expected a refusal, got ${String(err)}`);
    assert.match(err.message, /two pax extended headers/);
    assert.equal(await snapshot(s), before);
  });

  it("reads a size field with a leading NUL as tar does, so a header tar reads is not skipped as data", async () => {
    const s = await scene();
    const before = await snapshot(s);
    const symlinkLayer = rawTar([{ name: "escape", type: "2", link: s.outside }]);
    const desync = rawTar([rawHeader({ name: "lead", sizeField: leadingNulSize(512) }, 0), rawHeader({ name: "decoy" }, 512), rawHeader({ name: "escape/pwned" }, 0)]);
    const err = await applyChecked(s, desync, symlinkLayer);
    assert.ok(err instanceof LayerRefusedError, `expected a refusal, got ${String(err)}`);
    assert.match(err.message, /"escape\/pwned" goes through the absolute symlink escape/);
    assert.equal(await snapshot(s), before);
  });

  it("accepts a pax global header that only carries a comment (git archive writes one)", async () => {
    const s = await scene();
    const layer = rawTar([{ name: "pax_global_header", type: "g", data: pax({ comment: "0123abcd" }) }, { name: "f", data: "ok" }]);
    assert.equal(await applyChecked(s, layer, rawTar([])), undefined);
    assert.equal(await readFile(join(s.root, "f"), "utf8"), "ok");
  });
});

describe("the confined tar alone (no header check)", () => {
  it("cannot write through an absolute symlink in the rootfs, whatever the headers say", async () => {
    const s = await scene();
    const before = await snapshot(s);
    assert.equal(await applyChecked(s, rawTar([])), undefined); // the prelude: esc -> the sentinel dir, up -> ..
    for (const attack of [
      rawTar([{ name: "pax_global_header", type: "g", data: pax({ path: "esc/authorized_keys" }) }, { name: "harmless", data: "x" }]),
      rawTar([{ name: "esc/evil", data: "x" }, { name: "up/outside/evil", data: "x" }, { name: "d/rel/evil", data: "x" }]),
      rawTar([{ name: "h", type: "1", link: "esc/keep" }, { name: "esc/", type: "5", mode: 0o777 }]),
    ]) {
      await extractUnchecked(s.root, attack); // tar fails on some entries; only containment matters
      assert.equal(await snapshot(s), before);
    }
  });

  it("extracts a benign archive fully, with owners and modes", async () => {
    const s = await scene();
    const archive = rawTar([{ name: "a/", type: "5", mode: 0o750 }, { name: "a/b", data: "hello", mode: 0o600 }, { name: "l", type: "2", link: "/etc/passwd" }]);
    assert.equal(await extractUnchecked(s.root, archive), undefined);
    assert.equal(await readFile(join(s.root, "a/b"), "utf8"), "hello");
    assert.equal((await stat(join(s.root, "a/b"))).mode & 0o777, 0o600);
    assert.equal((await stat(join(s.root, "a"))).mode & 0o777, 0o750);
  });
});

describe(`a fuzzed corpus of hostile layers (seed ${SEED}; BETA9_TAR_FUZZ_SEED replays another)`, () => {
  // Paths in the archives name the sentinel dir, so the corpus is built per scene.
  const sample = corpus("/OUTSIDE", SEED, FUZZ_CASES);
  for (const [i, c] of sample.entries()) {
    it(`#${i} ${c.what}: ${c.refused ? "refused" : "contained"}, nothing outside changes`, async () => {
      const s = await scene();
      const archive = corpus(s.outside, SEED, FUZZ_CASES)[i]!.archive;
      const before = await snapshot(s);
      const err = await applyChecked(s, archive);
      if (c.refused) assert.ok(isRefusal(err), `expected the check to refuse it, got ${String(err)}`);
      assert.equal(await snapshot(s), before, "the checked path changed something outside the rootfs");
      await extractUnchecked(s.root, archive);
      assert.equal(await snapshot(s), before, "the confined tar changed something outside the rootfs");
    });
  }
});
