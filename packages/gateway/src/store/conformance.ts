/**
 * The shared store conformance suite: every `Store` backend runs these tests through the `Store`
 * interface only, so SQLite and Postgres are held to the same documented semantics (types.ts).
 * Each test opens a fresh store and closes it afterwards, even when the test fails.
 */
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  Beta9Error, hashStubConfig, type Deployment, normalizeStubConfig, type ErrorCode, type StubConfig, type StubConfigInput, type StubKind,
  type StubType,
} from "@beta9/protocol";
import type { Store } from "./types.js";

const ALL = { limit: 1000, offset: 0 };

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** Asserts that `promise` rejects with a `Beta9Error` of the given catalogue code. */
async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof Beta9Error, `expected a Beta9Error ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** Asserts that `actual` has (at least) the given fields, each deep-equal. */
function has(actual: object | undefined, expected: Record<string, unknown>): void {
  assert.ok(actual, "expected a value, got undefined");
  for (const [k, v] of Object.entries(expected)) assert.deepEqual((actual as Record<string, unknown>)[k], v, `field ${k}`);
}

function config(type: StubType, input: StubConfigInput = {}): { config: StubConfig; configHash: string } {
  const c = normalizeStubConfig(type.split("/")[0] as StubKind, input);
  return { config: c, configHash: hashStubConfig(c) };
}

type StubOptions = { app?: string; name?: string; type?: StubType; objectId?: string | null; input?: StubConfigInput };

export function runStoreConformance(backendName: string, open: () => Promise<Store>): void {
  describe(`store conformance: ${backendName}`, () => {
    let store: Store;
    let opened: Store | undefined;

    beforeEach(async () => {
      store = opened = await open();
    });
    afterEach(async () => { // runs when the test failed too; `opened` is unset if open() threw
      const s = opened;
      opened = undefined;
      await s?.close();
    });

    /** A workspace (with a first workspace token); returns its id. */
    const workspace = async (name: string): Promise<string> =>
      (await store.workspaces.create(name, "workspace")).workspace.id;

    /** A stub in the workspace (the app is created on demand); defaults to a deployable endpoint. */
    async function stub(workspaceId: string, o: StubOptions = {}) {
      const app = await store.apps.getOrCreate(workspaceId, o.app ?? "app");
      const type = o.type ?? "endpoint/deployment";
      const { stub: s } = await store.stubs.getOrCreate({
        workspaceId, appId: app.id, name: o.name ?? "handler", type, objectId: o.objectId ?? null, ...config(type, o.input),
      });
      return s;
    }

    /** Versions 1, 2 and 3 of a deployment name, created one after another. */
    async function deploy3(ws: string, stubId: string, name: string): Promise<[Deployment, Deployment, Deployment]> {
      const create = () => store.deployments.create(ws, stubId, name);
      return [await create(), await create(), await create()];
    }

    /** A workspace with an app and a deployable endpoint stub. */
    async function deployable(name = "ws") {
      const ws = await workspace(name);
      return { ws, stub: await stub(ws) };
    }

    describe("workspaces", () => {
      it("bootstrap on an empty store creates a workspace and an admin token, once", async () => {
        const first = await store.workspaces.bootstrap("default");
        assert.ok(first);
        assert.equal(first.workspace.name, "default");
        has(first.token, { type: "admin", workspaceId: first.workspace.id, active: true, revokedAt: null });
        assert.deepEqual(await store.tokens.authenticate(first.token.key),
          { id: first.token.id, workspaceId: first.workspace.id, type: "admin" });
        assert.deepEqual(await store.workspaces.get(first.workspace.id), first.workspace);
        assert.equal(await store.workspaces.bootstrap("again"), undefined);
        assert.deepEqual(await store.workspaces.list(ALL), [first.workspace]);
      });
      it("bootstrap on a store that already has a workspace returns undefined", async () => {
        await workspace("existing");
        assert.equal(await store.workspaces.bootstrap("default"), undefined);
        assert.equal((await store.workspaces.list(ALL)).length, 1);
      });
      it("create returns the workspace with its first token of the requested type", async () => {
        for (const type of ["workspace", "restricted", "admin"] as const) {
          const { workspace: ws, token } = await store.workspaces.create(`ws-${type}`, type);
          assert.equal(ws.name, `ws-${type}`);
          has(token, { type, workspaceId: ws.id, active: true, revokedAt: null });
          assert.deepEqual(await store.workspaces.get(ws.id), ws);
          assert.deepEqual(await store.tokens.authenticate(token.key), { id: token.id, workspaceId: ws.id, type });
        }
      });
      it("a duplicate name is NAME_TAKEN and adds no row", async () => {
        await workspace("taken");
        const before = await store.workspaces.list(ALL);
        await rejectsWith(store.workspaces.create("taken", "admin"), "NAME_TAKEN");
        assert.deepEqual(await store.workspaces.list(ALL), before);
      });
      it("get of an unknown id is undefined; list pages with limit and offset", async () => {
        assert.equal(await store.workspaces.get("00000000-0000-0000-0000-000000000000"), undefined);
        const ids = new Set<string>();
        for (let i = 0; i < 5; i++) ids.add(await workspace(`ws-${i}`));
        const pages = await Promise.all([0, 2, 4].map((offset) => store.workspaces.list({ limit: 2, offset })));
        assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
        const seen = pages.flat().map((w) => w.id);
        assert.deepEqual(new Set(seen), ids);
        assert.equal(seen.length, 5);
        assert.deepEqual(await store.workspaces.list({ limit: 10, offset: 5 }), []);
      });
    });
    describe("tokens", () => {
      it("the key is returned once and authenticates; get and list never carry it", async () => {
        const ws = await workspace("a");
        const token = await store.tokens.create(ws, "restricted", "ci");
        assert.ok(typeof token.key === "string" && token.key.length >= 20 && token.key.startsWith(token.prefix));
        has(token, { name: "ci", type: "restricted", workspaceId: ws, active: true });
        assert.deepEqual(await store.tokens.authenticate(token.key), { id: token.id, workspaceId: ws, type: "restricted" });
        const { key, ...stored } = token;
        const got = await store.tokens.get(ws, token.id);
        assert.deepEqual(got, stored);
        const list = await store.tokens.list(ws, ALL);
        assert.equal(list.length, 2);
        assert.ok(list.some((t) => t.id === token.id));
        for (const t of list) assert.equal("key" in t, false);
        assert.ok(!JSON.stringify(list).includes(key));
        assert.ok(!JSON.stringify(got).includes(key));
      });
      it("a wrong key does not authenticate", async () => {
        const ws = await workspace("a");
        const token = await store.tokens.create(ws, "workspace");
        for (const wrong of ["", "b9_unknown", `${token.key}x`, token.key.slice(0, -1), token.prefix]) {
          assert.equal(await store.tokens.authenticate(wrong), undefined, wrong);
        }
      });
      it("revoke deactivates, stops authentication and is idempotent", async () => {
        const ws = await workspace("a");
        const token = await store.tokens.create(ws, "workspace");
        const revoked = await store.tokens.revoke(ws, token.id);
        has(revoked, { id: token.id, active: false });
        assert.equal(typeof revoked?.revokedAt, "string");
        assert.equal(await store.tokens.authenticate(token.key), undefined);
        assert.deepEqual(await store.tokens.get(ws, token.id), revoked);
        assert.deepEqual(await store.tokens.revoke(ws, token.id), revoked);
        assert.equal(await store.tokens.authenticate(token.key), undefined);
      });
      it("a token of another workspace is invisible to get and revoke", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const token = await store.tokens.create(a, "workspace");
        assert.equal(await store.tokens.get(b, token.id), undefined);
        assert.equal(await store.tokens.revoke(b, token.id), undefined);
        assert.equal(await store.tokens.revoke(a, "no-such-token"), undefined);
        assert.equal((await store.tokens.get(a, token.id))?.active, true);
        assert.ok(await store.tokens.authenticate(token.key));
        assert.ok(!(await store.tokens.list(b, ALL)).some((t) => t.id === token.id));
      });
      it("the last active admin token of the store cannot be revoked", async () => {
        const boot = await store.workspaces.bootstrap("default");
        assert.ok(boot);
        const first = boot.token;
        await store.tokens.create(first.workspaceId, "workspace");
        await rejectsWith(store.tokens.revoke(first.workspaceId, first.id), "CONFLICT");
        assert.equal((await store.tokens.get(first.workspaceId, first.id))?.active, true);
        assert.ok(await store.tokens.authenticate(first.key));

        const other = await store.workspaces.create("other", "admin");
        assert.equal((await store.tokens.revoke(first.workspaceId, first.id))?.active, false);
        await store.tokens.create(other.workspace.id, "workspace");
        await rejectsWith(store.tokens.revoke(other.workspace.id, other.token.id), "CONFLICT");
        assert.equal((await store.tokens.get(other.workspace.id, other.token.id))?.active, true);
        assert.ok(await store.tokens.authenticate(other.token.key));
      });
    });
    describe("apps", () => {
      it("getOrCreate is idempotent", async () => {
        const ws = await workspace("a");
        const app = await store.apps.getOrCreate(ws, "web");
        has(app, { name: "web", workspaceId: ws });
        assert.deepEqual(await store.apps.getOrCreate(ws, "web"), app);
        assert.deepEqual(await store.apps.get(ws, app.id), app);
        assert.deepEqual(await store.apps.list(ws, ALL), [app]);
      });
      it("apps are isolated per workspace", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const appA = await store.apps.getOrCreate(a, "web");
        const appB = await store.apps.getOrCreate(b, "web");
        assert.notEqual(appA.id, appB.id);
        assert.equal(await store.apps.get(b, appA.id), undefined);
        assert.deepEqual(await store.apps.list(b, ALL), [appB]);
        assert.deepEqual(await store.apps.list(a, ALL), [appA]);
      });
    });
    describe("secrets", () => {
      it("create, update, delete and list names and dates only, per workspace", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const created = await store.secrets.create(a, "API_KEY", "sealed-1");
        assert.deepEqual(Object.keys(created).sort(), ["createdAt", "name", "updatedAt"], "no value in the entity");
        await rejectsWith(store.secrets.create(a, "API_KEY", "sealed-2"), "SECRET_EXISTS");
        await store.secrets.create(b, "API_KEY", "sealed-b");
        const updated = await store.secrets.update(a, "API_KEY", "sealed-3");
        assert.equal(updated?.name, "API_KEY");
        assert.ok(updated!.updatedAt >= created.updatedAt);
        assert.equal(await store.secrets.update(a, "MISSING", "x"), undefined);
        assert.deepEqual((await store.secrets.list(a, ALL)).map((s) => s.name), ["API_KEY"]);
        assert.equal(await store.secrets.count(b), 1);
        assert.deepEqual(await store.secrets.sealedAll(), [
          { workspaceId: a, name: "API_KEY", sealed: "sealed-3" }, { workspaceId: b, name: "API_KEY", sealed: "sealed-b" },
        ].sort((x, y) => x.workspaceId.localeCompare(y.workspaceId)));
        assert.equal(await store.secrets.delete(a, "API_KEY"), true);
        assert.equal(await store.secrets.delete(a, "API_KEY"), false);
        assert.deepEqual(await store.secrets.list(a, ALL), []);
        assert.equal(await store.secrets.count(b), 1, "another workspace's secret is untouched");
      });
    });
    describe("objects", () => {
      it("put is idempotent and get is per workspace", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const hash = sha256("bundle");
        const first = await store.objects.put(a, hash, 42);
        assert.equal(first.created, true);
        has(first.object, { hash, size: 42 });
        const again = await store.objects.put(a, hash, 42);
        assert.equal(again.created, false);
        assert.deepEqual(again.object, first.object);
        assert.deepEqual(await store.objects.get(a, hash), first.object);
        assert.deepEqual(await store.objects.list(a, ALL), [first.object]);
        assert.equal(await store.objects.get(b, hash), undefined);
        assert.deepEqual(await store.objects.list(b, ALL), []);
        assert.equal((await store.objects.put(b, hash, 42)).created, true);
        assert.equal(await store.objects.get(a, sha256("other")), undefined);
      });
    });
    describe("stubs", () => {
      it("getOrCreate reuses a stub with the same app, name, type, object and config", async () => {
        const ws = await workspace("a");
        const app = await store.apps.getOrCreate(ws, "app");
        const input = { workspaceId: ws, appId: app.id, name: "h", type: "endpoint/deployment" as const, objectId: sha256("o"),
          ...config("endpoint/deployment") };
        const first = await store.stubs.getOrCreate(input);
        assert.equal(first.created, true);
        const second = await store.stubs.getOrCreate(input);
        assert.equal(second.created, false);
        assert.deepEqual(second.stub, first.stub);
        assert.deepEqual(await store.stubs.list(ws, ALL), [first.stub]);
      });
      it("a different app, name, type, object or config makes a new stub", async () => {
        const ws = await workspace("a");
        const base = await stub(ws);
        const variants = [
          await stub(ws, { app: "other" }),
          await stub(ws, { name: "other" }),
          await stub(ws, { type: "endpoint/serve" }),
          await stub(ws, { objectId: sha256("one") }),
          await stub(ws, { objectId: sha256("two") }),
          await stub(ws, { input: { cpu: 2 } }),
        ];
        const ids = new Set([base.id, ...variants.map((s) => s.id)]);
        assert.equal(ids.size, 7);
        assert.equal((await stub(ws, { objectId: sha256("one") })).id, variants[3]?.id);
        assert.equal((await stub(ws)).id, base.id);
        assert.equal((await store.stubs.list(ws, ALL)).length, 7);
      });
      it("names gives the workspace's stubs' names by id, in one read; others' and unknown ids are left out", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const [x, y, foreign] = [await stub(a, { name: "x" }), await stub(a, { name: "y" }), await stub(b, { name: "z" })];
        assert.deepEqual(await store.stubs.names(a, [x.id, y.id, x.id, foreign.id, "no-such-stub"]), new Map([[x.id, "x"], [y.id, "y"]]));
        assert.deepEqual(await store.stubs.names(a, []), new Map());
      });
      it("the config round-trips and stubs are isolated per workspace", async () => {
        const [a, b] = [await workspace("a"), await workspace("b")];
        const input: StubConfigInput = {
          env: { B: "2", A: "1" }, secrets: ["TOKEN", "KEY"], ports: [8080, 80], handler: "app:main",
          callbackUrl: "https://example.com/cb", autoscaler: { type: "queue_depth", maxContainers: 3, minContainers: 1 },
        };
        const s = await stub(a, { type: "taskqueue/deployment", input, objectId: sha256("code") });
        const expected = config("taskqueue/deployment", input);
        has(s, { ...expected, type: "taskqueue/deployment", objectId: sha256("code"), workspaceId: a, name: "handler" });
        const got = await store.stubs.get(a, s.id);
        assert.deepEqual(got, s);
        assert.deepEqual(got?.config, expected.config);
        assert.equal(await store.stubs.get(b, s.id), undefined);
        assert.deepEqual(await store.stubs.list(b, ALL), []);
      });
    });
    describe("deployments", () => {
      it("versions count 1, 2, 3 per name", async () => {
        const { ws, stub: s } = await deployable();
        const created = await deploy3(ws, s.id, "api");
        assert.deepEqual(created.map((d) => d.version), [1, 2, 3]);
        assert.equal((await store.deployments.create(ws, s.id, "other")).version, 1);
        const [d] = created;
        has(d, { active: true, name: "api", workspaceId: ws, stubId: s.id, appId: s.appId, stubType: "endpoint/deployment" });
        assert.deepEqual(await store.deployments.get(ws, d.id), d);
      });
      it("versions are not reused after delete", async () => {
        const { ws, stub: s } = await deployable();
        const [, , v3] = await deploy3(ws, s.id, "api");
        assert.equal(await store.deployments.delete(ws, v3.id), true);
        assert.equal((await store.deployments.create(ws, s.id, "api")).version, 4);
      });
      it("resolve gives the newest active version for latest, and any version by number", async () => {
        const { ws, stub: s } = await deployable();
        const [v1, v2, v3] = await deploy3(ws, s.id, "api");
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.id, v3.id);
        has(await store.deployments.setActive(ws, v3.id, false), { id: v3.id, active: false });
        assert.equal((await store.deployments.get(ws, v3.id))?.active, false);
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.id, v2.id);
        await store.deployments.setActive(ws, v2.id, false);
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.id, v1.id);
        assert.equal((await store.deployments.resolve(ws, "api", 3))?.id, v3.id);
        assert.equal((await store.deployments.resolve(ws, "api", 1))?.version, 1);
        assert.equal(await store.deployments.resolve(ws, "api", 9), undefined);
        assert.equal(await store.deployments.resolve(ws, "nope", "latest"), undefined);
        await store.deployments.setActive(ws, v1.id, false);
        assert.equal(await store.deployments.resolve(ws, "api", "latest"), undefined);
        assert.equal((await store.deployments.setActive(ws, v3.id, true))?.active, true);
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.id, v3.id);
        assert.equal(await store.deployments.setActive(ws, "no-such-id", true), undefined);
      });
      it("delete removes from get, list and resolve, and is false the second time", async () => {
        const { ws, stub: s } = await deployable();
        const [, v2, v3] = await deploy3(ws, s.id, "api");
        assert.equal(await store.deployments.delete(ws, v3.id), true);
        assert.equal(await store.deployments.get(ws, v3.id), undefined);
        assert.equal(await store.deployments.resolve(ws, "api", 3), undefined);
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.id, v2.id);
        assert.deepEqual((await store.deployments.list(ws, ALL)).map((d) => d.version), [2, 1]);
        assert.equal(await store.deployments.setActive(ws, v3.id, true), undefined);
        assert.equal(await store.deployments.delete(ws, v3.id), false);
        assert.equal(await store.deployments.delete(ws, "no-such-id"), false);
      });
      it("list filters by name and active, newest first, with limit and offset", async () => {
        const { ws, stub: s } = await deployable();
        const [a1, a2, a3] = await deploy3(ws, s.id, "a");
        const b1 = await store.deployments.create(ws, s.id, "b");
        await store.deployments.setActive(ws, a2.id, false);
        const ids = async (filter: { name?: string; active?: boolean; limit?: number; offset?: number }) =>
          (await store.deployments.list(ws, { ...ALL, ...filter })).map((d) => d.id);
        assert.deepEqual(await ids({}), [b1.id, a3.id, a2.id, a1.id]);
        assert.deepEqual(await ids({ name: "a" }), [a3.id, a2.id, a1.id]);
        assert.deepEqual(await ids({ active: false }), [a2.id]);
        assert.deepEqual(await ids({ active: true }), [b1.id, a3.id, a1.id]);
        assert.deepEqual(await ids({ name: "a", active: true }), [a3.id, a1.id]);
        assert.deepEqual(await ids({ name: "c" }), []);
        assert.deepEqual(await ids({ limit: 2, offset: 1 }), [a3.id, a2.id]);
        assert.deepEqual(await ids({ name: "a", limit: 1, offset: 2 }), [a1.id]);
        assert.deepEqual(await ids({ offset: 4 }), []);
      });
      it("create refuses unknown stubs, other workspaces' stubs and non-deployable stubs", async () => {
        const { ws } = await deployable("a");
        const other = await deployable("b");
        await rejectsWith(store.deployments.create(ws, "no-such-stub", "api"), "RESOURCE_NOT_FOUND");
        await rejectsWith(store.deployments.create(ws, other.stub.id, "api"), "RESOURCE_NOT_FOUND");
        const serve = await stub(ws, { type: "endpoint/serve" });
        await rejectsWith(store.deployments.create(ws, serve.id, "api"), "STUB_NOT_DEPLOYABLE");
        assert.deepEqual(await store.deployments.list(ws, ALL), []);
        assert.equal(await store.deployments.resolve(ws, "api", "latest"), undefined);
      });
      it("a name keeps its workload type: a taskqueue cannot take an endpoint's name", async () => {
        const { ws, stub: endpoint } = await deployable();
        const queue = await stub(ws, { name: "worker", type: "taskqueue/deployment" });
        const d = await store.deployments.create(ws, endpoint.id, "api");
        await rejectsWith(store.deployments.create(ws, queue.id, "api"), "CONFLICT");
        assert.deepEqual(await store.deployments.list(ws, { ...ALL, name: "api" }), [d]);
        has(await store.deployments.create(ws, queue.id, "jobs"), { stubType: "taskqueue/deployment", version: 1 });
      });
      it("deployments are isolated per workspace", async () => {
        const [a, b] = [await deployable("a"), await deployable("b")];
        const d = await store.deployments.create(a.ws, a.stub.id, "api");
        assert.equal(await store.deployments.get(b.ws, d.id), undefined);
        assert.equal(await store.deployments.resolve(b.ws, "api", "latest"), undefined);
        assert.equal(await store.deployments.resolve(b.ws, "api", 1), undefined);
        assert.deepEqual(await store.deployments.list(b.ws, ALL), []);
        assert.equal(await store.deployments.setActive(b.ws, d.id, false), undefined);
        assert.equal(await store.deployments.delete(b.ws, d.id), false);
        assert.deepEqual(await store.deployments.get(a.ws, d.id), d);
        assert.equal((await store.deployments.create(b.ws, b.stub.id, "api")).version, 1);
        assert.equal((await store.deployments.create(a.ws, a.stub.id, "api")).version, 2);
      });
    });
    describe("tasks", () => {
      it("create for an existing stub is PENDING with no retries", async () => {
        const { ws, stub: s } = await deployable();
        const task = await store.tasks.create(ws, s.id);
        has(task, {
          status: "PENDING", retries: 0, stubId: s.id, workspaceId: ws, containerId: null, error: null, startedAt: null, endedAt: null,
        });
        // Reads users see name the workload beside its id (joined in, one query for a whole list).
        assert.deepEqual(await store.tasks.get(ws, task.id), { ...task, stubName: s.name });
        assert.deepEqual((await store.tasks.list(ws, ALL)).map((t) => [t.id, t.stubName]), [[task.id, s.name]]);
      });
      it("create for an unknown or foreign stub is RESOURCE_NOT_FOUND", async () => {
        const [a, b] = [await deployable("a"), await deployable("b")];
        await rejectsWith(store.tasks.create(a.ws, "no-such-stub"), "RESOURCE_NOT_FOUND");
        await rejectsWith(store.tasks.create(a.ws, b.stub.id), "RESOURCE_NOT_FOUND");
        assert.deepEqual(await store.tasks.list(a.ws, ALL), []);
      });
      it("tasks are isolated per workspace", async () => {
        const [a, b] = [await deployable("a"), await deployable("b")];
        const t1 = await store.tasks.create(a.ws, a.stub.id);
        const t2 = await store.tasks.create(a.ws, a.stub.id);
        assert.equal(await store.tasks.get(b.ws, t1.id), undefined);
        assert.deepEqual(await store.tasks.list(b.ws, ALL), []);
        assert.deepEqual(new Set((await store.tasks.list(a.ws, ALL)).map((t) => t.id)), new Set([t1.id, t2.id]));
        assert.equal((await store.tasks.list(a.ws, { limit: 1, offset: 0 })).length, 1);
      });
    });
    describe("pools", () => {
      it("create, duplicate name, getByName and list", async () => {
        const gpu = await store.pools.create("gpu", "GPU machines");
        has(gpu, { name: "gpu", description: "GPU machines" });
        await rejectsWith(store.pools.create("gpu", "again"), "NAME_TAKEN");
        assert.deepEqual(await store.pools.getByName("gpu"), gpu);
        assert.equal(await store.pools.getByName("nope"), undefined);
        const cpu = await store.pools.create("cpu", "");
        const list = await store.pools.list(ALL);
        assert.equal(list.length, 2);
        assert.deepEqual(new Set(list.map((p) => p.id)), new Set([gpu.id, cpu.id]));
        assert.equal((await store.pools.list({ limit: 1, offset: 1 })).length, 1);
      });
    });
    describe("machines", () => {
      it("a fresh workspace has no machines; an unknown id is undefined", async () => {
        const ws = await workspace("a");
        assert.deepEqual(await store.machines.list(ws, ALL), []);
        assert.deepEqual(await store.machines.list(ws, { ...ALL, pool: "default" }), []);
        assert.equal(await store.machines.get(ws, "no-such-machine"), undefined);
      });
    });
    describe("concurrency", () => {
      it("20 concurrent deployments of one name get versions 1..20", async () => {
        const { ws, stub: s } = await deployable();
        const created = await Promise.all(Array.from({ length: 20 }, () => store.deployments.create(ws, s.id, "api")));
        assert.deepEqual(created.map((d) => d.version).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
        assert.equal(new Set(created.map((d) => d.id)).size, 20);
        assert.equal((await store.deployments.list(ws, { ...ALL, name: "api" })).length, 20);
        assert.equal((await store.deployments.resolve(ws, "api", "latest"))?.version, 20);
      });
    });
  });
}
