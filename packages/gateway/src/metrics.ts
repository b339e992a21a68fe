/**
 * Prometheus metrics for the gateway, on a registry of its own (several gateways may share a
 * process in tests): HTTP routes here, per-workload series (metrics/workloads.ts) and cluster
 * series (metrics/cluster.ts) when the app has its context. `GET /metrics` takes an admin token.
 */
import type { FastifyInstance } from "fastify";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import type { Stub } from "@beta9/protocol";
import type { GatewayContext } from "./api/common.js";
import { clusterMetrics } from "./metrics/cluster.js";
import { maxWorkloadsFromEnv, WorkloadLabels } from "./metrics/labels.js";
import { workloadMetrics } from "./metrics/workloads.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The workload a call invoked (set by the invoke route), for its per-workload series. */
    workload: Stub | null;
  }
}

export function registerMetrics(app: FastifyInstance, ctx?: GatewayContext): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "beta9_gateway_" });
  const requests = new Counter({
    name: "beta9_gateway_http_requests_total",
    help: "HTTP requests answered, by route pattern, method and status",
    labelNames: ["route", "method", "status"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "beta9_gateway_http_request_duration_seconds",
    help: "Time from request to response, by route pattern",
    labelNames: ["route", "method"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const workloads = ctx && workloadMetrics({
    registry, scheduler: ctx.scheduler, autoscaler: ctx.autoscaler, dispatcher: ctx.dispatcher,
    labels: new WorkloadLabels({
      stub: (id) => ctx.store.stubs.getAny(id),
      workspaceName: async (id) => (await ctx.store.workspaces.get(id))?.name,
    }, maxWorkloadsFromEnv()),
  });
  if (ctx) clusterMetrics(registry, ctx.scheduler, ctx.logs);
  app.decorateRequest("workload", null);
  app.addHook("onResponse", async (request, reply) => {
    // The route pattern, not the URL, keeps label cardinality bounded.
    const route = request.routeOptions.url ?? "unmatched";
    const seconds = reply.elapsedTime / 1000;
    requests.inc({ route, method: request.method, status: reply.statusCode });
    duration.observe({ route, method: request.method }, seconds);
    if (request.workload !== null) workloads?.observeRequest(request.workload.id, reply.statusCode, seconds);
  });
  app.addHook("onClose", async () => workloads?.close());
  app.get("/metrics", { config: { access: "admin" }, schema: { hide: true } }, async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  return registry;
}
