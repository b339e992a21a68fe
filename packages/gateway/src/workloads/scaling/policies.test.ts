/** Each scaling policy against a table of samples: what it asks for, within the stub's bounds. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { hashStubConfig, normalizeStubConfig, type Stub } from "@beta9/protocol";
import { concurrency } from "./concurrency.js";
import { policyFor } from "./index.js";
import { pinned } from "./pinned.js";
import { pods } from "./pods.js";
import type { ScalingPolicy, ScalingSample } from "./policy.js";
import { queueDepth } from "./queue-depth.js";

const sample = (s: Partial<ScalingSample>): ScalingSample => ({ inflight: 0, waiting: 0, minContainers: 0, maxContainers: 10, tasksPerContainer: 1, ...s });

/** [policy, sample, desired, why] */
const table: [string, ScalingPolicy, Partial<ScalingSample>, number][] = [
  ["queue depth: nothing queued scales to zero", queueDepth, {}, 0],
  ["queue depth: nothing queued keeps minContainers", queueDepth, { minContainers: 2 }, 2],
  ["queue depth: one container per task by default", queueDepth, { inflight: 2, waiting: 3 }, 5],
  ["queue depth: tasksPerContainer packs them", queueDepth, { inflight: 1, waiting: 8, tasksPerContainer: 4 }, 3],
  ["queue depth: never past maxContainers", queueDepth, { waiting: 500, maxContainers: 3 }, 3],
  ["concurrency: the first request after scale-to-zero starts one", concurrency, { waiting: 1 }, 1],
  ["concurrency: open sockets and requests in flight count alike", concurrency, { inflight: 7, tasksPerContainer: 2 }, 4],
  ["concurrency: bounded by maxContainers", concurrency, { inflight: 40, waiting: 40, maxContainers: 5 }, 5],
  ["concurrency: idle keeps minContainers", concurrency, { minContainers: 1 }, 1],
  ["pinned: one, with no demand", pinned, {}, 1],
  ["pinned: one, whatever the demand", pinned, { inflight: 30, waiting: 30 }, 1],
  ["pods: by requests in flight", pods, { inflight: 5, tasksPerContainer: 4 }, 2],
  ["pods: scaled to zero when idle", pods, {}, 0],
];

for (const [name, policy, s, desired] of table) {
  test(name, () => assert.equal(policy(sample(s)), desired));
}

test("each stub kind gets its policy; a serve session's is pinned whatever its kind", () => {
  // Only the stub's type chooses: one config serves every kind here.
  const config = normalizeStubConfig("endpoint", {});
  const stub = (_kind: string, type: string): Stub => {
    return { id: "s", workspaceId: "ws", appId: "a", name: "n", type, objectId: null, config, configHash: hashStubConfig(config), createdAt: "" } as unknown as Stub;
  };
  assert.equal(policyFor(stub("endpoint", "endpoint/deployment"), false), concurrency);
  assert.equal(policyFor(stub("taskqueue", "taskqueue/deployment"), false), queueDepth);
  assert.equal(policyFor(stub("function", "function/deployment"), false), queueDepth);
  assert.equal(policyFor(stub("pod", "pod/deployment"), false), pods);
  assert.equal(policyFor(stub("endpoint", "endpoint/serve"), true), pinned);
});
