/**
 * GPU containers get their devices: a real gateway places two GPU containers on a real runc worker
 * whose "GPUs" are stand-ins (this machine has none): detected groups whose nodes are real character
 * devices (/dev/fuse, /dev/net/tun as the two GPUs, /dev/kvm as the control node). Each container
 * must see its own device node and the control node, not the other's, and the visible-devices env.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { runcUnavailableReason, startWorker, type DeviceGroup, type StartedWorker } from "@beta9/worker";
import { startGateway } from "@beta9/gateway";
import { waitFor } from "./testing.js";

const NODES = ["/dev/fuse", "/dev/net/tun", "/dev/kvm"];
const skip = runcUnavailableReason() ?? (NODES.every((n) => existsSync(n)) ? undefined : `needs ${NODES.join(", ")}`);

test("two GPU containers on a runc worker get distinct device nodes, the control node and the env", { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "b9agent-gpu-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent" });
  let worker: StartedWorker | undefined;
  // One hook, in this order: hooks run in the order they were added, and the worker's spare
  // writable-layer disk stays mounted under dir until the worker has closed.
  t.after(async () => {
    await worker?.close(2000);
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const devices: DeviceGroup[] = [{
    vendor: "nvidia", type: "H100", count: 2, controlNodes: ["/dev/kvm"], visibleEnv: ["NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"],
    devices: [
      { index: 0, name: "stand-in 0", memoryMiB: 81559, uuid: "GPU-00000000-test-0000-0000-000000000000", nodes: ["/dev/fuse"] },
      { index: 1, name: "stand-in 1", memoryMiB: 81559, uuid: "GPU-11111111-test-1111-1111-111111111111", nodes: ["/dev/net/tun"] },
    ],
  }];
  worker = await startWorker({
    gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), logger: pino({ level: "silent" }),
    runtime: "runc", name: "b9gpu", subnet: "10.219.246.0/24", workerId: "gpu-worker", devices,
  });
  await worker.connected;
  const key = gateway.bootstrap!.token.key;
  const lines = new Map<string, string[]>();
  worker.worker.events.on("log", (id, line) => lines.set(id, [...(lines.get(id) ?? []), line.line]));

  const script = `echo "cuda=$CUDA_VISIBLE_DEVICES"; for d in ${NODES.join(" ")}; do test -c $d && echo "has $d" || echo "no $d"; done; sleep 1`;
  const run = async () => {
    const res = await request(`${gateway.url}/api/v1/container`, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ command: ["sh", "-c", script], gpu: "H100", gpuCount: 1, memory: 128 }),
    });
    const body = (await res.body.json()) as { id: string };
    assert.equal(res.statusCode, 201, JSON.stringify(body));
    return body.id;
  };
  const [a, b] = await Promise.all([run(), run()]);
  await waitFor("both containers exited", () => {
    const list = worker.worker.listContainers();
    return [a, b].every((id) => list.find((c) => c.containerId === id)?.state.state === "EXITED");
  });
  const info = new Map(worker.worker.listContainers().map((c) => [c.containerId, c]));
  assert.equal(info.get(a)!.state.exitCode, 0, info.get(a)!.state.message);
  assert.equal(info.get(b)!.state.exitCode, 0, info.get(b)!.state.message);
  const byIndex = new Map([a, b].map((id) => [info.get(id)!.gpuIndices.join(","), lines.get(id) ?? []]));
  assert.deepEqual([...byIndex.keys()].sort(), ["0", "1"], "each container holds one distinct GPU");
  assert.deepEqual(byIndex.get("0"), ["cuda=GPU-00000000-test-0000-0000-000000000000", "has /dev/fuse", "no /dev/net/tun", "has /dev/kvm"]);
  assert.deepEqual(byIndex.get("1"), ["cuda=GPU-11111111-test-1111-1111-111111111111", "no /dev/fuse", "has /dev/net/tun", "has /dev/kvm"]);
  assert.deepEqual(worker.worker.gpuUsage(), { total: 2, free: 2 }, "devices are released when containers exit");
});
