/**
 * What the web dashboard needs beyond the entity routes: its files at `/` (public: they hold no
 * data, and the page asks for a token before it reads anything), who the token is (`whoami`: the
 * page hides what the token may not do), a task's input and a retry, and each deployment's recent
 * series for its charts (metrics/series.ts).
 */
import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { API_PREFIX, Beta9Error, IdParamsSchema, TOKEN_TYPES, type TaskStatus } from "@beta9/protocol";
import { isTerminal } from "../tasks/dispatcher.js";
import { WorkloadSeries } from "../metrics/series.js";
import { checkedInput, found, responses, type GatewayContext } from "./common.js";
import { putTask } from "./tasks.js";
import { defaultDashboardDir, loadDashboard, sendStatic } from "./dashboard-static.js";

type IdParams = Static<typeof IdParamsSchema>;

const WhoamiSchema = Type.Object({
  tokenId: Type.String(),
  tokenType: Type.Union(TOKEN_TYPES.map((t) => Type.Literal(t))),
  workspaceId: Type.String(),
  workspaceName: Type.String(),
  /** May change the workspace's resources (deploy, cancel, terminate, manage tokens and secrets). */
  canWrite: Type.Boolean(),
  /** May see and change the cluster (workers, pools, metrics). */
  isAdmin: Type.Boolean(),
});

const PointSchema = Type.Object({
  t: Type.Integer(), calls: Type.Integer(), errors: Type.Integer(), coldStarts: Type.Integer(), containers: Type.Integer(),
  p50: Type.Union([Type.Number(), Type.Null()]), p99: Type.Union([Type.Number(), Type.Null()]),
});
const SeriesSchema = Type.Object({ stubId: Type.String(), stepSeconds: Type.Integer(), points: Type.Array(PointSchema) });

const FAILED: ReadonlySet<TaskStatus> = new Set(["ERROR", "TIMEOUT", "RETRY"]);

export interface DashboardOptions {
  /** Where the built files are (default: packages/dashboard/dist, or BETA9_DASHBOARD_DIR). */
  dir?: string;
  series?: WorkloadSeries;
}

export function dashboardRoutes(app: FastifyInstance, ctx: GatewayContext, options: DashboardOptions = {}): WorkloadSeries {
  const { store, dispatcher, autoscaler, scheduler } = ctx;
  const series = options.series ?? new WorkloadSeries();

  // Endpoint calls (the invoke route names the workload), task attempts, cold starts, and containers once a step.
  app.addHook("onResponse", async (request, reply) => {
    if (request.workload) series.call(request.workload.id, reply.elapsedTime / 1000, reply.statusCode >= 500, request.workload.workspaceId);
  });
  const stopOutcomes = dispatcher.onOutcome((stubId, status, startedAt) => {
    if (status === "CANCELLED" || status === "EXPIRED") return;
    series.call(stubId, startedAt === null ? undefined : (Date.now() - Date.parse(startedAt)) / 1000, FAILED.has(status));
  });
  const stopReady = autoscaler.onContainerReady((stub) => series.coldStart(stub.id, stub.workspaceId));
  const sampler = setInterval(() => series.sampleContainers(scheduler.containers.list({ active: true })), series.stepMs);
  sampler.unref();
  app.addHook("onClose", async () => {
    clearInterval(sampler);
    stopOutcomes();
    stopReady();
  });

  const files = loadDashboard(options.dir ?? defaultDashboardDir());
  app.get("/", { config: { access: "public" }, schema: { hide: true } }, async (request, reply) => {
    const index = files.get("index.html");
    if (!index) {
      return reply.code(503).type("text/plain; charset=utf-8")
        .send("The dashboard is not built here: run `npm run build` (or ./beta9 up) from the repository, then reload.\n");
    }
    return sendStatic(request, reply, index, false);
  });
  app.get<{ Params: { file: string } }>("/dashboard/:file", { config: { access: "public" }, schema: { hide: true } }, async (request, reply) => {
    const file = request.params.file === "index.html" ? undefined : files.get(request.params.file);
    if (!file) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "file", id: request.params.file });
    return sendStatic(request, reply, file, true);
  });

  app.get(`${API_PREFIX}/whoami`, {
    config: { access: "read" },
    schema: { tags: ["workspace"], summary: "The calling token: its type, workspace, and what it may do", response: responses({ 200: WhoamiSchema }) },
  }, async (request) => {
    const { id, type, workspaceId } = request.auth;
    const workspace = found(await store.workspaces.get(workspaceId), "workspace", workspaceId);
    return { tokenId: id, tokenType: type, workspaceId, workspaceName: workspace.name, canWrite: type === "admin" || type === "workspace", isAdmin: type === "admin" };
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/task/:id/input`, {
    config: { access: "read" },
    schema: { tags: ["task"], summary: "The input a task was given", params: IdParamsSchema, response: responses({ 200: Type.Object({ input: Type.Unknown() }) }) },
  }, async (request) => {
    const task = found(await store.tasks.get(request.auth.workspaceId, request.params.id), "task", request.params.id);
    return { input: (await store.tasks.input(task.id)) ?? null };
  });

  app.post<{ Params: IdParams }>(`${API_PREFIX}/task/:id/retry`, {
    config: { access: "write" },
    schema: {
      tags: ["task"], summary: "Run an ended task's input again as a new task (task queues and functions)", params: IdParamsSchema,
      response: responses({ 201: Type.Object({ task_id: Type.String() }) }),
    },
  }, async (request, reply) => {
    const { workspaceId } = request.auth;
    const task = found(await store.tasks.get(workspaceId, request.params.id), "task", request.params.id);
    if (!isTerminal(task)) throw new Beta9Error("CONFLICT", { reason: `task ${task.id} is ${task.status}; only an ended task can be retried (cancel it first)` });
    const stub = found(await store.stubs.get(workspaceId, task.stubId), "stub", task.stubId);
    const input = await store.tasks.input(task.id);
    if (stub.type.startsWith("taskqueue/")) return reply.code(201).send(await putTask(ctx, stub, input));
    if (!stub.type.startsWith("function/")) {
      throw new Beta9Error("CONFLICT", { reason: `${stub.name} is a ${stub.type}: call it again instead (only task queue and function tasks are retried here)` });
    }
    const checked = checkedInput(stub, input);
    const count = dispatcher.inflight(stub.id);
    const limit = stub.config.maxPendingTasks;
    if (count >= limit) throw new Beta9Error("QUEUE_FULL", { name: stub.name, count, limit }, { count, limit });
    return reply.code(201).send({ task_id: (await dispatcher.put(stub, checked)).id });
  });

  app.get<{ Params: IdParams }>(`${API_PREFIX}/deployment/:id/series`, {
    config: { access: "read" },
    schema: {
      tags: ["deployment"], summary: "The deployment's recent series (calls, errors, p50/p99 latency, cold starts, containers), in steps, oldest first",
      params: IdParamsSchema, response: responses({ 200: SeriesSchema }),
    },
  }, async (request) => {
    const deployment = found(await store.deployments.get(request.auth.workspaceId, request.params.id), "deployment", request.params.id);
    return { stubId: deployment.stubId, stepSeconds: series.stepMs / 1000, points: series.get(deployment.stubId) };
  });
  return series;
}
