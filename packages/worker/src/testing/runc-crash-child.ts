/**
 * A stand-in worker for the kill -9 test: starts one long-running container with a RuncRuntime,
 * prints `{"id","pid"}` on stdout, then idles until it is killed (the test sends SIGKILL, so
 * nothing gets cleaned up — exactly what reap() must handle).
 * argv: <stateDir> <name> <subnet> <lowerDir>
 */
import { RuncRuntime } from "../runtime/runc/runc-runtime.js";

const [stateDir, name, subnet, lowerDir] = process.argv.slice(2);
if (!stateDir || !name || !subnet || !lowerDir) {
  console.error("usage: runc-crash-child <stateDir> <name> <subnet> <lowerDir>");
  process.exit(2);
}
const runtime = new RuncRuntime({ stateDir, name, subnet });
const handle = await runtime.start(
  {
    id: "crashed",
    lowerDirs: [lowerDir],
    mounts: [{ source: "/usr", destination: "/usr", readOnly: true }],
    command: ["sh", "-c", "sleep 1000 & while :; do sleep 1; done"],
    env: {},
    cpuMillicores: 500,
    memoryMiB: 64,
    ports: [8000],
    // A policy of its own, so the test sees per-container egress chains outlive the worker.
    egress: { block: true },
  },
  () => {},
);
process.stdout.write(`${JSON.stringify({ id: handle.id, pid: handle.pid })}\n`);
setInterval(() => {}, 1 << 30);
