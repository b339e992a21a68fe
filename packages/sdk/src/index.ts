export { Client, ApiError } from "./client.js";
export type { ClientOptions, RequestOptions, Query, Health, ListOptions, ContainerEvent } from "./client.js";
export type * from "@beta9/protocol";
export { Image } from "./image.js";
