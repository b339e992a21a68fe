/**
 * Endpoints, web apps and realtime endpoints: one container per tasksPerContainer requests in
 * flight or waiting. An open WebSocket holds its slot for its whole life, so open sockets count
 * here as requests do (and keep their container warm).
 */
import { containersFor, withinBounds, type ScalingPolicy } from "./policy.js";

export const concurrency: ScalingPolicy = (s) => withinBounds(s, containersFor(s, s.inflight + s.waiting));
