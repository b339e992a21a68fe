// A machine's worker for benchmarks, in its own process: connects with a machine token, reports
// every placed container RUNNING on an upstream HTTP server's port, and answers tunnel.open with
// the real worker's tunnel code (@beta9/worker dist/tunnel.js). A real worker adds runc, not bytes.
// argv[2]: JSON { gatewayUrl, token, upstreamPort }. Prints one JSON line once welcomed.
import { pino } from "pino";
import WebSocket from "ws";
import { openTunnel } from "../../packages/worker/dist/tunnel.js";

const o = JSON.parse(process.argv[2]);
const logger = pino({ level: "warn" });
const ws = new WebSocket(o.gatewayUrl.replace("http", "ws") + "/api/v1/worker/connect", { headers: { authorization: `Bearer ${o.token}` } });
const send = (m) => ws.send(JSON.stringify(m));
const target = { host: "127.0.0.1", port: o.upstreamPort };
ws.on("open", () => send({
  type: "hello", workerId: "bench", hostname: "bench", pool: "default", runtime: "process", isolates: false, allowUnisolated: true,
  capacity: { cpuMillicores: 64_000, memoryMiB: 65_536, gpus: [] }, containers: [], version: "bench",
}));
ws.on("message", (data) => {
  const m = JSON.parse(String(data));
  if (m.type === "welcome") process.stdout.write(`${JSON.stringify({ workerId: m.workerId })}\n`);
  else if (m.type === "container.run") {
    const ports = Object.fromEntries(m.request.ports.map((p) => [String(p), target]));
    send({ type: "container.state", containerId: m.request.containerId, state: "RUNNING", ports });
  } else if (m.type === "tunnel.open") {
    openTunnel({ gatewayUrl: o.gatewayUrl, token: o.token, streamId: m.streamId, target, logger })
      .catch((err) => send({ type: "tunnel.failed", streamId: m.streamId, message: err.message }));
  }
});
process.on("SIGTERM", () => process.exit(0));
