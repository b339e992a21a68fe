/**
 * The runner: PID 1's child in every workload container, started by the worker with the Node
 * runtime it mounts at /beta9. It serves plain HTTP on $PORT so the gateway can tell when the
 * container is ready (GET /health) and, as the workload issues land, hand it work.
 *
 * It imports nothing outside Node itself, so it runs on any base image.
 */
import { createServer } from "node:http";

const port = Number(process.env.PORT ?? 8000);
const startedAt = Date.now();

const server = createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", containerId: process.env.BETA9_CONTAINER_ID ?? null, uptimeMs: Date.now() - startedAt }));
    return;
  }
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: `the runner has no route ${req.method} ${req.url}` } }));
});

server.listen(port, "0.0.0.0", () => process.stdout.write(`runner listening on ${port}\n`));
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
