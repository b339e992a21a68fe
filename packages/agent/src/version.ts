/** Reported to the gateway at registration (`machine list` shows it). */
export const AGENT_VERSION = "0.1.0";
