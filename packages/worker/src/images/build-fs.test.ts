/**
 * Copy steps and user lookups against an image tree whose links try to lead the worker out of it:
 * every path resolves inside the image, as it would inside the container.
 */
import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { copyIntoImage, lookupUser, resolveInRoot } from "./build-fs.js";
import { tempDir } from "./testing.js";

const skip = process.getuid?.() === 0 ? undefined : "copies run tar confined in a mount namespace, which needs root";
let work: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let files: string;
let outside: string;

before(async () => {
  work = await tempDir("build-fs");
  root = join(work.path, "image");
  files = join(work.path, "files");
  outside = join(work.path, "outside");
  await mkdir(join(root, "usr/lib"), { recursive: true });
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(outside);
  await symlink("usr/lib", join(root, "lib"));
  await symlink("/etc", join(root, "abs-etc"));
  await symlink("../../../../../../..", join(root, "up"));
  await symlink(outside, join(root, "host-path"));
  await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n");
  await writeFile(join(root, "etc/group"), "root:x:0:\napp:x:1001:\nstaff:x:50:\n");
  await mkdir(join(files, "tree/sub"), { recursive: true });
  await writeFile(join(files, "one.conf"), "one\n");
  await writeFile(join(files, "tree/a.txt"), "a\n");
  await writeFile(join(files, "tree/sub/b.txt"), "b\n");
  await writeFile(join(files, "x.py"), "x\n");
  await writeFile(join(files, "y.py"), "y\n");
});
after(async () => work?.cleanup());

const copy = (src: string[], dest: string, extra: { chown?: string; chmod?: string } = {}) =>
  copyIntoImage(root, files, { kind: "copy", object: "0".repeat(64), src, dest, ...extra }, work.path);

describe("build filesystem steps", { skip }, () => {
  it("resolves links inside the image: absolute ones from its root, .. stopping there", async () => {
    assert.equal((await resolveInRoot(root, "/lib/x")).host, join(root, "usr/lib/x"));
    assert.equal((await resolveInRoot(root, "/abs-etc/passwd")).host, join(root, "etc/passwd"));
    assert.equal((await resolveInRoot(root, "/up/etc")).host, join(root, "etc"));
    assert.equal((await resolveInRoot(root, "/host-path/x", true)).host, join(root, outside.slice(1), "x"), "a host path is a path in the image");
  });

  it("copies a file to a new name, into a directory, and a directory's contents, following the image's links", async () => {
    await copy(["one.conf"], "/lib/app/renamed.conf");
    assert.equal(await readFile(join(root, "usr/lib/app/renamed.conf"), "utf8"), "one\n");
    assert.ok((await lstat(join(root, "lib"))).isSymbolicLink(), "the link is kept, not replaced by a directory");
    await copy(["tree"], "/up/srv/");
    assert.equal(await readFile(join(root, "srv/sub/b.txt"), "utf8"), "b\n");
    await copy(["*.py"], "/host-path/code/", { chown: "app:staff", chmod: "0600" });
    const st = await stat(join(root, outside.slice(1), "code/x.py"));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [1000, 50, 0o600]);
    assert.deepEqual(await readdir(outside), [], "nothing was written outside the image");
  });

  it("refuses what Docker refuses and names what is missing", async () => {
    await assert.rejects(copy(["*.py"], "/one-file"), /names 2 files: the destination \/one-file must be a directory ending in \//);
    await assert.rejects(copy(["nope.txt"], "/x/"), /nope.txt: no such file or directory in the uploaded files/);
    await assert.rejects(copy(["one.conf"], "/etc/passwd/x"), /\/etc\/passwd is not a directory in the image/);
  });

  it("never reads the host through the uploaded files' own symlinks, chained or not", async () => {
    // What a bundle could hold if a link chain passed the gateway's check: up and out to /.
    await writeFile(join(outside, "secret"), "host secret\n");
    await symlink(outside, join(files, "escape"));
    await mkdir(join(files, "s"));
    await symlink("..", join(files, "s", "up"));
    await symlink("/", join(files, "root"));
    for (const src of ["escape/secret", "escape/*", "root/etc/hostname", "s/up/escape/secret"]) {
      await assert.rejects(copy([src], "/loot/"), /(reached through a symlink that leads outside|no such file or directory in the uploaded files)/, src);
    }
    await assert.rejects(lstat(join(root, "loot", "secret")), /ENOENT/, "nothing from the host was copied in");
    // The whole upload, links and all, copies as links (never followed).
    await copy(["."], "/whole/");
    assert.ok((await lstat(join(root, "whole", "escape"))).isSymbolicLink());
    assert.equal(await readFile(join(root, "whole", "one.conf"), "utf8"), "one\n");
  });

  it("looks users and groups up in the image's own files", async () => {
    assert.deepEqual(await lookupUser(root, "app"), { uid: 1000, gid: 1001, home: "/home/app" });
    assert.deepEqual(await lookupUser(root, "app:staff"), { uid: 1000, gid: 50, home: "/home/app" });
    assert.deepEqual(await lookupUser(root, "4242:7"), { uid: 4242, gid: 7 });
    await assert.rejects(lookupUser(root, "ghost"), /user ghost is not in the image's \/etc\/passwd/);
    await assert.rejects(lookupUser(root, "app:ghosts"), /group ghosts is not in the image's \/etc\/group/);
  });
});
