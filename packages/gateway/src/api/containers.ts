/** Containers (run, list, stop, logs with live follow over SSE) and the workers that run them. */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Static } from "@sinclair/typebox";
import {
  API_PREFIX, Beta9Error, ContainerListQuerySchema, ContainerLogsQuerySchema, ContainerSchema, IdParamsSchema, LogLineSchema,
  normalizeGpu, parseCpu, parseMemory, RunContainerBodySchema, WorkerSchema,
  type Container, type RunContainerBody,
} from "@beta9/protocol";
import type { ContainerRecord } from "../scheduler/containers.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import { resourceField, found, Items, responses, type GatewayContext } from "./common.js";
import { streamEvents } from "./sse.js";

type IdParams = Static<typeof IdParamsSchema>;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toContainer(r: ContainerRecord): Container {
  return {
    id: r.id, workspaceId: r.workspaceId, stubId: r.stubId, imageId: r.request.imageId, workerId: r.workerId, state: r.state,
    exitCode: r.exitCode, reason: r.reason, message: r.message, command: r.request.command, cpuMillicores: r.request.cpuMillicores,
    memoryMiB: r.request.memoryMiB, gpu: r.gpuType, ports: r.ports, createdAt: iso(r.createdAt)!, startedAt: iso(r.startedAt), endedAt: iso(r.endedAt),
  };
}

const withName = (c: Container, names: Map<string, string>): Container => {
  const stubName = c.stubId === null ? undefined : names.get(c.stubId);
  return stubName === undefined ? c : { ...c, stubName };
};

function toWorkerInfo(w: ReturnType<Scheduler["listWorkers"]>[number]) {
  return {
    id: w.id, hostname: w.hostname, pool: w.pool, runtime: w.runtime, isolates: w.isolates, connected: w.connected, cordoned: w.cordoned,
    lastSeenAt: new Date(w.lastSeenAt).toISOString(), capacity: w.capacity, containers: w.containers,
    free: { cpuMillicores: w.capacity.cpuMillicores - w.reserved.cpuMillicores, memoryMiB: w.capacity.memoryMiB - w.reserved.memoryMiB },
  };
}

function resources(body: RunContainerBody) {
  const gpu = body.gpu === undefined ? [] : resourceField("gpu", () => normalizeGpu(body.gpu));
  return {
    cpuMillicores: body.cpu === undefined ? 1000 : resourceField("cpu", () => parseCpu(body.cpu)),
    memoryMiB: body.memory === undefined ? 512 : resourceField("memory", () => parseMemory(body.memory)),
    gpu, gpuCount: body.gpuCount ?? (gpu.length > 0 ? 1 : 0),
  };
}

export function containerRoutes(app: FastifyInstance, { scheduler, store, logs }: GatewayContext): void {
  app.post<{ Body: RunContainerBody }>(`${API_PREFIX}/container`, {
    config: { access: "write" },
    schema: { tags: ["container"], summary: "Run a container on a worker chosen by the scheduler", body: RunContainerBodySchema, response: responses({ 201: ContainerSchema }) },
  }, async (request, reply) => {
    const body = request.body;
    if (body.imageId !== undefined) {
      const image = found(await store.images.get(request.auth.workspaceId, body.imageId), "image", body.imageId);
      if (image.status !== "ready") throw new Beta9Error("IMAGE_NOT_READY", { id: image.id, status: image.status });
    }
    const demand = { ...resources(body), pool: body.pool ?? null };
    const never = scheduler.neverFits({ ...demand, workspaceId: request.auth.workspaceId });
    if (never) throw new Beta9Error("CAPACITY_UNAVAILABLE", { reason: never });
    const record = scheduler.submit({
      containerId: randomUUID(), workspaceId: request.auth.workspaceId, stubId: null, imageId: body.imageId ?? null,
      command: body.command, env: body.env ?? {}, ...demand, ports: body.ports ?? [],
    });
    return reply.code(201).send(toContainer(record));
  });

  app.get<{ Querystring: Static<typeof ContainerListQuerySchema> }>(`${API_PREFIX}/container`, {
    config: { access: "read" },
    schema: { tags: ["container"], summary: "List the workspace's containers, newest first", querystring: ContainerListQuerySchema, response: responses({ 200: Items(ContainerSchema) }) },
  }, async (request) => {
    const active = request.query.active === undefined ? undefined : request.query.active === "true";
    const items = scheduler.containers.list({ workspaceId: request.auth.workspaceId, ...(active !== undefined && { active }) });
    // The workloads' names, in one read for the whole list.
    const names = await store.stubs.names(request.auth.workspaceId, items.flatMap((r) => (r.stubId === null ? [] : [r.stubId])));
    return { items: items.sort((a, b) => b.createdAt - a.createdAt).map((r) => withName(toContainer(r), names)) };
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/container/:id`, {
    config: { access: "read" },
    schema: { tags: ["container"], summary: "Get a container", params: IdParamsSchema, response: responses({ 200: ContainerSchema }) },
  }, async (request) => {
    const record = found(scheduler.containers.getInWorkspace(request.auth.workspaceId, request.params.id), "container", request.params.id);
    return withName(toContainer(record), await store.stubs.names(request.auth.workspaceId, record.stubId === null ? [] : [record.stubId]));
  });

  app.post<{ Params: IdParams }>(`${API_PREFIX}/container/:id/stop`, {
    config: { access: "write" },
    schema: { tags: ["container"], summary: "Stop a container (SIGTERM, then SIGKILL)", params: IdParamsSchema, response: responses({ 200: ContainerSchema }) },
  }, async (request) => {
    const record = found(scheduler.containers.getInWorkspace(request.auth.workspaceId, request.params.id), "container", request.params.id);
    scheduler.stop(record.id);
    return toContainer(record);
  });

  app.get<{ Params: IdParams; Querystring: Static<typeof ContainerLogsQuerySchema> }>(`${API_PREFIX}/container/:id/logs`, {
    config: { access: "read" },
    schema: {
      tags: ["container"], summary: "Log history; with follow=true a text/event-stream of `log` and `state` events until the container exits",
      params: IdParamsSchema, querystring: ContainerLogsQuerySchema, response: responses({ 200: Items(LogLineSchema) }),
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const live = scheduler.containers.getInWorkspace(workspaceId, request.params.id);
    // Gone from the live registry (long exited, or before a gateway restart): its stored lines.
    if (!live && request.query.follow !== "true" && logs && (await logs.ownerOf(request.params.id)) === workspaceId) {
      const stored = await logs.query({ workspaceId, select: { containerId: request.params.id }, limit: 5000 });
      return { items: stored.map((e) => ({ stream: e.stream, line: e.line, at: e.at, ...(e.taskId !== null && { taskId: e.taskId }) })) };
    }
    const record = found(live, "container", request.params.id);
    if (request.query.follow !== "true") return { items: scheduler.containers.logHistory(record.id) };
    streamEvents(request, reply, (emit, end) => {
      // Subscribed before the history is replayed, so no line falls between the two.
      const unsubscribe = scheduler.containers.subscribe(record.id, (e) => {
        if (e.kind === "logs") for (const line of e.lines) emit("log", line);
        else {
          emit("state", toContainer(e.container));
          if (e.container.state === "EXITED") end(toContainer(e.container));
        }
      });
      for (const line of scheduler.containers.logHistory(record.id)) emit("log", line);
      emit("state", toContainer(record));
      if (record.state === "EXITED") end(toContainer(record));
      return unsubscribe;
    });
  });

  app.get(`${API_PREFIX}/worker`, {
    config: { access: "admin" },
    schema: { tags: ["worker"], summary: "Connected workers, their capacity and what is free", response: responses({ 200: Items(WorkerSchema) }) },
  }, async () => ({ items: scheduler.listWorkers().map(toWorkerInfo) }));
}
