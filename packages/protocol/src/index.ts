export * from "./errors.js";
export * from "./resources.js";
export * from "./entities.js";
export * from "./stub-config.js";
export * from "./api.js";
export * from "./worker-protocol.js";
export * from "./image-spec.js";
export * from "./runner-protocol.js";
