/** b9agent: joins this machine to a beta9-ts gateway (the command is main.ts). */
export { Agent, type AgentOptions, type AgentSnapshot, type AgentStatus, type ContainerView } from "./agent.js";
export * from "./config.js";
export { agentRegistry, serveMetrics, type MetricsServer } from "./metrics.js";
export { systemdUnit, type ServiceOptions } from "./service.js";
export { Backoff } from "./backoff.js";
export { AGENT_VERSION } from "./version.js";
