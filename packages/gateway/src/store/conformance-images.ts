/**
 * Store conformance for images (part of the shared suite, kept in its own file): one row per
 * image id shared by the workspaces that asked for it, the bytes a workspace's image quota counts,
 * and unlinking, which removes the row once no workspace uses the image.
 */
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import type { Store } from "./types.js";

export function runImageConformance(backendName: string, open: () => Promise<Store>): void {
  describe(`${backendName} store: images`, () => {
    let store: Store;
    let a: string;
    let b: string;
    beforeEach(async () => {
      store = await open();
      const tag = Math.random().toString(36).slice(2, 8);
      a = (await store.workspaces.create(`img-a-${tag}`, "workspace")).workspace.id;
      b = (await store.workspaces.create(`img-b-${tag}`, "workspace")).workspace.id;
    });
    afterEach(async () => store.close());

    const id = (c: string) => c.repeat(64);

    it("the first request builds; another workspace's request of the same id reuses it and sees it from then on", async () => {
      assert.equal((await store.images.request(a, id("1"), { base: "x" })).build, true);
      assert.equal(await store.images.get(b, id("1")), undefined);
      assert.equal((await store.images.request(b, id("1"), { base: "x" })).build, false);
      assert.equal((await store.images.get(b, id("1")))?.status, "building");
    });

    it("bytes: the ready images a workspace asked for, each once; building and failed ones count nothing", async () => {
      await store.images.request(a, id("1"), {});
      await store.images.request(a, id("2"), {});
      await store.images.request(a, id("3"), {});
      await store.images.request(b, id("1"), {});
      await store.images.markReady(id("1"), 1000, id("f"));
      await store.images.markReady(id("2"), 234, id("e"));
      await store.images.markFailed(id("3"), "no");
      assert.equal(await store.images.bytes(a), 1234);
      assert.equal(await store.images.bytes(b), 1000);
      assert.equal(await store.images.bytes("nobody"), 0);
    });

    it("unlink: the workspace stops seeing the image; the row goes with the last workspace that used it", async () => {
      await store.images.request(a, id("1"), {});
      await store.images.request(b, id("1"), {});
      await store.images.markReady(id("1"), 1000, id("f"));
      assert.equal(await store.images.unlink(a, id("1")), "unlinked");
      assert.equal(await store.images.get(a, id("1")), undefined);
      assert.equal(await store.images.bytes(a), 0);
      assert.equal((await store.images.getAny(id("1")))?.status, "ready");
      assert.equal(await store.images.unlink(a, id("1")), "absent", "twice: nothing to unlink");
      assert.equal(await store.images.unlink(b, id("1")), "orphaned");
      assert.equal(await store.images.getAny(id("1")), undefined);
      assert.equal((await store.images.request(a, id("1"), {})).build, true, "asked for again: built again");
    });

    it("unlink changes nothing while the image builds (a build must find its row when it ends)", async () => {
      await store.images.request(a, id("2"), {});
      assert.equal(await store.images.unlink(a, id("2")), "building");
      assert.equal((await store.images.get(a, id("2")))?.status, "building");
      await store.images.markFailed(id("2"), "no");
      assert.equal(await store.images.unlink(a, id("2")), "orphaned", "failed: it goes");
    });
  });
}
