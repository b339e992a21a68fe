/** Which scaling policy drives a stub's pool (policy.ts says what a policy is). */
import type { Stub } from "@beta9/protocol";
import { concurrency } from "./concurrency.js";
import { pinned } from "./pinned.js";
import { pods } from "./pods.js";
import type { ScalingPolicy } from "./policy.js";
import { queueDepth } from "./queue-depth.js";

export type { ScalingPolicy, ScalingSample } from "./policy.js";

export function policyFor(stub: Stub, isPinned: boolean): ScalingPolicy {
  if (isPinned) return pinned;
  if (stub.type.startsWith("pod/")) return pods;
  if (stub.type.startsWith("taskqueue/") || stub.type.startsWith("function/")) return queueDepth;
  return concurrency;
}
