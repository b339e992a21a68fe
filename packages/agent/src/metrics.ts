/** Prometheus /metrics for the agent (prom-client), bound to 127.0.0.1 unless configured otherwise. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Agent } from "./agent.js";

const CONTAINER_STATES = ["PENDING", "RUNNING", "STOPPING", "EXITED"] as const;

export function agentRegistry(agent: Agent): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "b9agent_" });
  const snap = () => agent.snapshot();
  new Gauge({ name: "b9agent_up", help: "1 while the agent runs", registers: [registry], collect() { this.set(1); } });
  new Gauge({
    name: "b9agent_ready", help: "1 when the last keepalive succeeded", registers: [registry],
    collect() { this.set(snap().status === "READY" ? 1 : 0); },
  });
  new Gauge({
    name: "b9agent_worker_connected", help: "1 while the worker's WebSocket to the gateway is open and welcomed", registers: [registry],
    collect() { this.set(snap().workerConnected ? 1 : 0); },
  });
  // The counter mirrors the agent's own totals at scrape time, so nothing is missed between scrapes.
  let seen = { ok: 0, failed: 0 };
  const keepalives = new Counter({
    name: "b9agent_keepalives_total", help: "Keepalives sent, by result", labelNames: ["result"], registers: [registry],
    collect() {
      const now = snap().keepalives;
      this.inc({ result: "success" }, now.ok - seen.ok);
      this.inc({ result: "failure" }, now.failed - seen.failed);
      seen = now;
    },
  });
  keepalives.inc({ result: "success" }, 0);
  keepalives.inc({ result: "failure" }, 0);
  new Gauge({
    name: "b9agent_last_keepalive_timestamp_seconds", help: "Unix time of the last successful keepalive (0: none yet)", registers: [registry],
    collect() { this.set((snap().lastKeepaliveAt ?? 0) / 1000); },
  });
  new Gauge({
    name: "b9agent_containers", help: "Containers this agent's worker knows, by state", labelNames: ["state"], registers: [registry],
    collect() {
      const containers = snap().containers;
      for (const state of CONTAINER_STATES) this.set({ state }, containers.filter((c) => c.state === state).length);
    },
  });
  new Gauge({ name: "b9agent_cpu_percent", help: "Host CPU busy % at the last keepalive", registers: [registry], collect() { this.set(snap().cpuPercent); } });
  new Gauge({ name: "b9agent_memory_percent", help: "Host memory used % at the last keepalive", registers: [registry], collect() { this.set(snap().memoryPercent); } });
  new Gauge({ name: "b9agent_disk_percent", help: "Used % of the disk holding the worker state", registers: [registry], collect() { this.set(snap().diskPercent); } });
  new Gauge({
    name: "b9agent_gpus", help: "Accelerators on this machine: total, and free (held by no container)", labelNames: ["kind"], registers: [registry],
    collect() {
      const g = snap().gpus;
      this.set({ kind: "total" }, g.total);
      this.set({ kind: "free" }, g.free);
    },
  });
  return registry;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("only GET /metrics here\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
