/** Prometheus metrics for the gateway, on a registry of its own (several gateways may share a process in tests). */
import type { FastifyInstance } from "fastify";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";

export function registerMetrics(app: FastifyInstance): Registry {
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
  app.addHook("onResponse", async (request, reply) => {
    // The route pattern, not the URL, keeps label cardinality bounded.
    const route = request.routeOptions.url ?? "unmatched";
    requests.inc({ route, method: request.method, status: reply.statusCode });
    duration.observe({ route, method: request.method }, reply.elapsedTime / 1000);
  });
  app.get("/metrics", { config: { access: "admin" }, schema: { hide: true } }, async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  return registry;
}
