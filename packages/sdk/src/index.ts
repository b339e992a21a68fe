export { Client, ApiError } from "./client.js";
export type { ClientOptions, RequestOptions, Query, Health, ListOptions, ContainerEvent } from "./client.js";
export type * from "@beta9/protocol";
export { Image } from "./image.js";
export { endpoint, taskQueue, fn, schedule, TaskPolicy, QueueDepthAutoscaler } from "./workloads.js";
export type {
  Workload, WorkloadOptions, BaseOptions, Context, Handler, WorkloadFactory, TaskPolicyOptions, QueueDepthAutoscalerOptions,
} from "./workloads.js";
export * as schema from "./schema.js";
