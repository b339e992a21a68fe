/**
 * Task queues and functions: one container per tasksPerContainer tasks in the queue's depth, where
 * depth is attempts running plus attempts waiting for a slot (the dispatcher starts one attempt
 * per queued task, up to what the stub may run at once, so waiting attempts are the queue).
 */
import { containersFor, withinBounds, type ScalingPolicy } from "./policy.js";

export const queueDepth: ScalingPolicy = (s) => withinBounds(s, containersFor(s, s.inflight + s.waiting));
