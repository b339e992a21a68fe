export { Client, ApiError } from "./client.js";
export type { ClientOptions, RequestOptions, Query, Health, ListOptions } from "./client.js";
export type * from "@beta9/protocol";
