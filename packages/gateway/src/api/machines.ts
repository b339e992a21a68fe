/**
 * External machines: created by an admin or workspace token (which gets the machine token once),
 * registered and kept alive by the machine's agent with that machine token, and cordoned, drained
 * or deleted by the workspace. See protocol/machine-protocol.ts for the whole contract.
 */
import type { FastifyInstance } from "fastify";
import { Gauge, type Registry } from "prom-client";
import { Type, type Static } from "@sinclair/typebox";
import {
  MACHINE_STATES,
  IdParamsSchema, ListQuerySchema, MACHINE_KEEPALIVE_PATH, MACHINE_PATH, MACHINE_REGISTER_PATH, MachineCreateBodySchema,
  MachineCreateResponseSchema, MachineKeepaliveBodySchema, MachineKeepaliveResponseSchema, MachineRegisterBodySchema,
  MachineRegisterResponseSchema, MachineSchema, NameSchema,
  type MachineCreateBody, type MachineKeepaliveBody, type MachineRegisterBody,
} from "@beta9/protocol";
import { MachineRegistry } from "../machines/registry.js";
import { Items, responses, toPage, type GatewayContext } from "./common.js";

type IdParams = Static<typeof IdParamsSchema>;
const MachineListQuerySchema = Type.Object(
  { ...ListQuerySchema.properties, pool: Type.Optional(NameSchema) },
  { additionalProperties: false },
);
const DrainResponseSchema = Type.Object({ machine: MachineSchema, stopped: Type.Integer({ description: "Containers asked to stop" }) });

export function machineRoutes(app: FastifyInstance, ctx: GatewayContext, metrics?: Registry): void {
  // Without a registry from the server (route-only tests) one without an expiry timer serves.
  const machines = ctx.machines ?? new MachineRegistry({ store: ctx.store, scheduler: ctx.scheduler });
  // Each machine's last keepalive figures, for /metrics; dropped once it is past its expiry.
  const reported = new Map<string, { pool: string; at: number; metrics: MachineKeepaliveBody }>();
  if (metrics) {
    const figures: [string, string, (m: MachineKeepaliveBody) => number][] = [
      ["beta9_machine_cpu_utilization_ratio", "CPU in use on the machine (its agent's keepalive), 0 to 1", (m) => m.cpuPercent / 100],
      ["beta9_machine_memory_utilization_ratio", "Memory in use on the machine, 0 to 1", (m) => m.memoryPercent / 100],
      ["beta9_machine_disk_utilization_ratio", "Disk in use on the machine, 0 to 1", (m) => m.diskPercent / 100],
      ["beta9_machine_gpus", "GPUs the machine has", (m) => m.gpus.total],
      ["beta9_machine_gpus_free", "GPUs free on the machine", (m) => m.gpus.free],
    ];
    for (const [name, help, value] of figures) {
      new Gauge({
        name, help, labelNames: ["machine", "pool"] as const, registers: [metrics],
        collect() {
          this.reset();
          const stale = Date.now() - machines.expirySeconds * 1000;
          for (const [id, r] of reported) {
            if (r.at < stale) reported.delete(id);
            else this.set({ machine: id, pool: r.pool }, value(r.metrics));
          }
        },
      });
    }
    // Read from the store when scraped: nothing to keep in step with every state change.
    new Gauge({
      name: "beta9_gateway_machines", help: "External machines by state (cordoned: those also cordoned)", labelNames: ["state"] as const,
      registers: [metrics],
      async collect() {
        const { states, cordoned } = await ctx.store.machines.counts();
        for (const state of MACHINE_STATES) this.set({ state }, states[state] ?? 0);
        this.set({ state: "cordoned" }, cordoned);
      },
    });
  }

  app.post<{ Body: MachineCreateBody }>(MACHINE_PATH, {
    config: { access: "write" },
    schema: {
      tags: ["machine"], summary: "Create a machine and its machine token (shown once)", body: MachineCreateBodySchema,
      response: responses({ 201: MachineCreateResponseSchema }),
    },
  }, async (request, reply) => reply.code(201).send(await machines.create(request.auth.workspaceId, request.body.pool)));

  app.post<{ Body: MachineRegisterBody }>(MACHINE_REGISTER_PATH, {
    config: { access: "machine" },
    schema: {
      tags: ["machine"], summary: "Register this machine (machine token): hardware and agent version", body: MachineRegisterBodySchema,
      response: responses({ 200: MachineRegisterResponseSchema }),
    },
  }, async (request) => machines.register(request.auth, request.body));

  app.post<{ Body: MachineKeepaliveBody }>(MACHINE_KEEPALIVE_PATH, {
    config: { access: "machine" },
    schema: {
      tags: ["machine"], summary: "Keepalive with metrics (machine token); marks the machine ready", body: MachineKeepaliveBodySchema,
      response: responses({ 200: MachineKeepaliveResponseSchema }),
    },
  }, async (request) => {
    const answer = await machines.keepalive(request.auth, request.body);
    if (metrics) reported.set(answer.machine.id, { pool: answer.machine.pool, at: Date.now(), metrics: request.body });
    return answer;
  });

  app.get<{ Querystring: Static<typeof MachineListQuerySchema> }>(MACHINE_PATH, {
    config: { access: "read" },
    schema: { tags: ["machine"], summary: "List machines", querystring: MachineListQuerySchema, response: responses({ 200: Items(MachineSchema) }) },
  }, async (request) => {
    const { pool } = request.query;
    return { items: await machines.list(request.auth.workspaceId, { ...toPage(request.query), ...(pool !== undefined && { pool }) }) };
  });

  app.get<{ Params: IdParams }>(`${MACHINE_PATH}/:id`, {
    config: { access: "read" },
    schema: { tags: ["machine"], summary: "Get a machine", params: IdParamsSchema, response: responses({ 200: MachineSchema }) },
  }, async (request) => machines.get(request.auth.workspaceId, request.params.id));

  app.delete<{ Params: IdParams }>(`${MACHINE_PATH}/:id`, {
    config: { access: "write" },
    schema: {
      tags: ["machine"], summary: "Delete a machine: revokes its token and disconnects its worker", params: IdParamsSchema,
      response: responses({ 200: MachineSchema }),
    },
  }, async (request) => machines.delete(request.auth.workspaceId, request.params.id));

  for (const [action, cordoned] of [["cordon", true], ["uncordon", false]] as const) {
    app.post<{ Params: IdParams }>(`${MACHINE_PATH}/:id/${action}`, {
      config: { access: "write" },
      schema: {
        tags: ["machine"], params: IdParamsSchema, response: responses({ 200: MachineSchema }),
        summary: cordoned ? "Cordon a machine: it gets no new containers" : "Uncordon a machine (also ends a drain)",
      },
    }, async (request) => machines.cordon(request.auth.workspaceId, request.params.id, cordoned));
  }

  app.post<{ Params: IdParams }>(`${MACHINE_PATH}/:id/drain`, {
    config: { access: "write" },
    schema: {
      tags: ["machine"], summary: "Drain a machine: cordon it and stop its containers so their work moves elsewhere",
      params: IdParamsSchema, response: responses({ 200: DrainResponseSchema }),
    },
  }, async (request) => machines.drain(request.auth.workspaceId, request.params.id));
}
