/**
 * Scaling policies: pure functions from what a stub's pool looks like now (a sample) to how many
 * containers it should have. The autoscaler's one loop (autoscaler.ts) takes a sample, asks the
 * stub's policy, and starts containers up to the answer; scaling down is keep-warm's (idle
 * containers stop after keepWarmSeconds), so a policy only ever says how many are needed now.
 * A new policy is one small file beside this one, chosen in policyFor (index.ts).
 */

/** One pool's state, as a policy sees it. */
export interface ScalingSample {
  /** Invocations holding a slot now: requests in flight, open WebSockets, running task attempts. */
  inflight: number;
  /** Invocations waiting for a slot (requests, task attempts). */
  waiting: number;
  /** The stub's autoscaler config. */
  minContainers: number;
  maxContainers: number;
  tasksPerContainer: number;
}

export type ScalingPolicy = (sample: ScalingSample) => number;

/** `wanted` held within the stub's minContainers..maxContainers. */
export function withinBounds(sample: ScalingSample, wanted: number): number {
  return Math.min(sample.maxContainers, Math.max(sample.minContainers, wanted));
}

/** Containers for `demand` invocations at tasksPerContainer each. */
export function containersFor(sample: ScalingSample, demand: number): number {
  return Math.ceil(demand / Math.max(1, sample.tasksPerContainer));
}
