/**
 * The machine protocol: how an external machine (run by `b9agent`) joins a gateway.
 *
 * 1. An admin creates the machine: `POST /api/v1/machine {pool}` → the machine (state "pending")
 *    and a machine token, shown once.
 * 2. The agent registers with that token: `POST /api/v1/machine/register` → state "registered".
 * 3. The agent sends `POST /api/v1/machine/keepalive` every `keepaliveIntervalSeconds` → "ready",
 *    with metrics. Without a keepalive for `expirySeconds` the gateway marks it "expired"; the agent
 *    may register again.
 * 4. The agent runs the ordinary worker, which dials `/api/v1/worker/connect` with the machine token:
 *    the worker id is the machine id and its pool is the machine's pool, whatever the hello says.
 *
 * Cordoned and draining are flags beside the state: a cordoned machine gets no new containers; a
 * draining one is cordoned and its containers are stopped so their work is rescheduled elsewhere.
 *
 * Connectivity: a machine worker is assumed unreachable from the gateway (NAT, no inbound port)
 * unless its hello says `reachable: true`. The gateway then reaches container ports through tunnels:
 * it sends `tunnel.open` on the control WebSocket, and the worker dials the container port locally
 * and opens `GET /api/v1/worker/tunnel/:streamId` (same token) whose binary frames carry the bytes.
 */
import { Type, type Static } from "@sinclair/typebox";
import { GpuInventorySchema } from "./worker-protocol.js";
import { MachineMetricsSchema, MachineSchema, type MachineMetrics } from "./entities.js";
import { NameSchema } from "./api.js";

export const MACHINE_PATH = "/api/v1/machine";
export const MACHINE_REGISTER_PATH = "/api/v1/machine/register";
export const MACHINE_KEEPALIVE_PATH = "/api/v1/machine/keepalive";
/**
 * The worker's tunnel WebSockets: `${WORKER_TUNNEL_PATH}/${TUNNEL_MUX_STREAM}`, one per worker carrying every
 * tunnelled TCP connection (tunnel-mux.ts), or `${WORKER_TUNNEL_PATH}/${streamId}`, one per connection.
 */
export const WORKER_TUNNEL_PATH = "/api/v1/worker/tunnel";

/** Defaults; the gateway's answer to register is what an agent must use. */
export const DEFAULT_MACHINE_KEEPALIVE_SECONDS = 60;
export const DEFAULT_MACHINE_EXPIRY_SECONDS = 300;

export const MachineCreateBodySchema = Type.Object(
  { pool: NameSchema },
  { additionalProperties: false },
);
export type MachineCreateBody = Static<typeof MachineCreateBodySchema>;

export const MachineCreateResponseSchema = Type.Object({
  machine: MachineSchema,
  token: Type.String({ description: "The machine token; shown once, the gateway stores only its hash" }),
});
export type MachineCreateResponse = Static<typeof MachineCreateResponseSchema>;

export const MachineRegisterBodySchema = Type.Object(
  {
    hostname: Type.String({ minLength: 1, maxLength: 253 }),
    os: Type.String({ minLength: 1, maxLength: 64 }),
    arch: Type.String({ minLength: 1, maxLength: 64 }),
    agentVersion: Type.String({ minLength: 1, maxLength: 64 }),
    cpuMillicores: Type.Integer({ minimum: 0 }),
    memoryMiB: Type.Integer({ minimum: 0 }),
    gpus: GpuInventorySchema,
  },
  { additionalProperties: false },
);
export type MachineRegisterBody = Static<typeof MachineRegisterBodySchema>;

export const MachineRegisterResponseSchema = Type.Object({
  machine: MachineSchema,
  keepaliveIntervalSeconds: Type.Integer({ minimum: 1 }),
  expirySeconds: Type.Integer({ minimum: 1 }),
});
export type MachineRegisterResponse = Static<typeof MachineRegisterResponseSchema>;

/** The keepalive body is exactly the metrics the gateway keeps. */
export const MachineKeepaliveBodySchema = MachineMetricsSchema;
export type MachineKeepaliveBody = MachineMetrics;

export const MachineKeepaliveResponseSchema = Type.Object({ machine: MachineSchema });
export type MachineKeepaliveResponse = Static<typeof MachineKeepaliveResponseSchema>;

/** Control messages for tunnels (part of GatewayMessage / WorkerMessage in worker-protocol). */
export interface TunnelOpenMessage {
  type: "tunnel.open";
  streamId: string;
  containerId: string;
  /** The container port as requested (the worker maps it to where it publishes that port). */
  port: number;
}
/** The worker could not dial the container port; the gateway closes the accepted connection. */
export interface TunnelFailedMessage {
  type: "tunnel.failed";
  streamId: string;
  message: string;
}
