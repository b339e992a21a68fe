/** `beta9 up`'s OS package step against a fake apt-get on PATH (a real process that records its calls). */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureOsPackages, realOsPackageEnv, type OsPackageEnv } from "./os-packages.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-ospkg-"));
const bin = join(dir, "bin");
const calls = join(dir, "calls");
const WANTED = { "fakepkg-a": "b9-fake-a", "fakepkg-b": "b9-fake-b" };
const savedPath = process.env.PATH;

before(() => {
  mkdirSync(bin);
  // Records each call; `install` creates the packages' executables; APT_FAIL makes it fail.
  writeFileSync(join(bin, "apt-get"), `#!/bin/sh
echo "$*" >> ${calls}
[ -n "$APT_FAIL" ] && exit 100
if [ "$1" = install ]; then
  for a in "$@"; do case "$a" in fakepkg-*) f=${bin}/b9-fake-\${a#fakepkg-}; printf '#!/bin/sh\\n' > $f; chmod +x $f;; esac; done
fi
exit 0
`);
  chmodSync(join(bin, "apt-get"), 0o755);
  process.env.PATH = `${bin}:${savedPath}`;
});
after(() => {
  process.env.PATH = savedPath;
  delete process.env.APT_FAIL;
  rmSync(dir, { recursive: true, force: true });
});

function env(overrides: Partial<OsPackageEnv> = {}): { env: OsPackageEnv; said: string[] } {
  const said: string[] = [];
  return { env: { ...realOsPackageEnv((l) => said.push(l)), platform: "linux", ...overrides }, said };
}
const recorded = () => { try { return readFileSync(calls, "utf8").trim().split("\n").filter(Boolean); } catch { return []; } };

test("without --no-install and without root, nothing runs and the exact command is printed", async () => {
  const { env: e, said } = env({ isRoot: false });
  assert.equal(await ensureOsPackages(e, true, WANTED), "skipped");
  assert.deepEqual(recorded(), []);
  assert.match(said.join("\n"), /sudo apt-get install -y --no-install-recommends fakepkg-a fakepkg-b/);
  const { env: e2, said: said2 } = env({ isRoot: true });
  assert.equal(await ensureOsPackages(e2, false, WANTED), "skipped", "--no-install");
  assert.deepEqual(recorded(), []);
  assert.match(said2.join("\n"), /install them with: apt-get install/);
});

test("a failing apt-get says what failed and what to run; up goes on", async () => {
  process.env.APT_FAIL = "1";
  try {
    const { env: e, said } = env({ isRoot: true });
    assert.equal(await ensureOsPackages(e, true, WANTED), "failed");
    assert.match(said.at(-1)!, /apt-get update failed \(exit 100\).*apt-get install -y --no-install-recommends fakepkg-a fakepkg-b/);
  } finally {
    delete process.env.APT_FAIL;
    rmSync(calls, { force: true });
  }
});

test("as root with apt-get: update, then install the missing ones, a line per step", async () => {
  const { env: e, said } = env({ isRoot: true });
  assert.equal(await ensureOsPackages(e, true, WANTED), "installed");
  assert.deepEqual(recorded(), ["update -qq", "install -y -qq --no-install-recommends fakepkg-a fakepkg-b"]);
  assert.deepEqual(said.filter((l) => l.startsWith("$ ")), ["$ apt-get update -qq", "$ apt-get install -y -qq --no-install-recommends fakepkg-a fakepkg-b"]);
  assert.equal(await ensureOsPackages(e, true, WANTED), "present", "a second run finds them and does nothing");
  assert.equal(recorded().length, 2);
});
