/** Workload labels: names looked up once, and bounded in number whatever the workspaces do. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { maxWorkloadsFromEnv, OTHER, WorkloadLabels, type LabelLookup } from "./labels.js";

function lookup(): LabelLookup & { calls: string[] } {
  const calls: string[] = [];
  const stubs: Record<string, { name: string; type: "endpoint/deployment" | "taskqueue/deployment"; workspaceId: string }> = {
    s1: { name: "hello", type: "endpoint/deployment", workspaceId: "w1" },
    s1v2: { name: "hello", type: "endpoint/deployment", workspaceId: "w1" },
    s2: { name: "jobs", type: "taskqueue/deployment", workspaceId: "w1" },
    s3: { name: "hello", type: "endpoint/deployment", workspaceId: "w2" },
  };
  return {
    calls,
    async stub(id) {
      calls.push(`stub ${id}`);
      return stubs[id];
    },
    async workspaceName(id) {
      calls.push(`workspace ${id}`);
      return { w1: "team-a", w2: "team-b" }[id];
    },
  };
}

test("a stub's labels are its workspace's name, its name and its type; versions of one name share them; each is looked up once", async () => {
  const l = lookup();
  const labels = new WorkloadLabels(l, 10);
  assert.deepEqual(await labels.ofStub("s1"), { workspace: "team-a", workload: "hello", kind: "endpoint/deployment" });
  assert.deepEqual(await labels.ofStub("s1v2"), await labels.ofStub("s1"));
  await Promise.all([labels.ofStub("s2"), labels.ofStub("s2")]);
  assert.equal(l.calls.filter((c) => c === "stub s2").length, 1);
  assert.deepEqual(await labels.ofWorkspace("w2", "sandbox"), { workspace: "team-b", workload: "", kind: "sandbox" });
  assert.deepEqual(await labels.ofStub("gone"), { workspace: OTHER, workload: OTHER, kind: "unknown" });
});

test("past the bound, new workloads are counted as _other; those already labelled keep their labels", async () => {
  const labels = new WorkloadLabels(lookup(), 2);
  assert.equal((await labels.ofStub("s1")).workload, "hello");
  assert.equal((await labels.ofStub("s2")).workload, "jobs");
  assert.deepEqual(await labels.ofStub("s3"), { workspace: OTHER, workload: OTHER, kind: "endpoint/deployment" });
  assert.equal((await labels.ofStub("s1v2")).workload, "hello", "a known triple is no new series");
  let called: unknown;
  labels.with("s1", (v) => (called = v));
  assert.deepEqual(called, { workspace: "team-a", workload: "hello", kind: "endpoint/deployment" }, "known labels apply at once");
});

test("BETA9_METRICS_MAX_WORKLOADS sets the bound; a malformed value is an error", () => {
  assert.equal(maxWorkloadsFromEnv({}), 500);
  assert.equal(maxWorkloadsFromEnv({ BETA9_METRICS_MAX_WORKLOADS: "50" }), 50);
  assert.throws(() => maxWorkloadsFromEnv({ BETA9_METRICS_MAX_WORKLOADS: "lots" }), /BETA9_METRICS_MAX_WORKLOADS="lots" is not valid/);
});
