/**
 * Pods: scaled by concurrent requests, like endpoints. A pod's server reports nothing about its
 * own load (it speaks no runner protocol), so what the gateway has in flight to it (requests
 * whose answer is still streaming, open WebSockets) and what waits for it is the whole measure.
 */
import { containersFor, withinBounds, type ScalingPolicy } from "./policy.js";

export const pods: ScalingPolicy = (s) => withinBounds(s, containersFor(s, s.inflight + s.waiting));
