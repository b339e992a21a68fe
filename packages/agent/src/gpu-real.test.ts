/**
 * On a machine with an NVIDIA GPU (skipped elsewhere): detection against the real nvidia-smi, then
 * a GPU container on a real runc worker sees its assigned GPU (nvidia-smi from the host's /usr,
 * which containers without an image get read-only) and the env names it by UUID.
 * Not yet run on real hardware by its author: the machine it was written on has no GPU.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { detectDevices, runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { startGateway } from "@beta9/gateway";
import { waitFor } from "./testing.js";

// Under /usr, so that containers without an image (host /usr, read-only) can run it too.
const nvidiaSmi = ["/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi"].find((p) => existsSync(p));
const skip = nvidiaSmi === undefined ? "no nvidia-smi on this machine" : runcUnavailableReason();

test("real NVIDIA GPU: detected, and a runc GPU container sees exactly its assigned GPU", { skip }, async (t) => {
  const warnings: string[] = [];
  const devices = (await detectDevices({ warn: (m) => warnings.push(m) })).filter((g) => g.vendor === "nvidia");
  assert.deepEqual(warnings, []);
  assert.ok(devices.length > 0, "nvidia-smi is installed but no GPU was detected");
  for (const g of devices) {
    for (const d of g.devices) {
      assert.ok(d.memoryMiB > 0 && d.uuid?.startsWith("GPU-"), JSON.stringify(d));
      assert.match(d.nodes[0]!, /^\/dev\/nvidia\d+$/);
    }
    assert.ok(g.controlNodes.includes("/dev/nvidiactl"), JSON.stringify(g.controlNodes));
  }

  const dir = mkdtempSync(join(tmpdir(), "b9agent-gpu-real-"));
  const gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent" });
  let worker: StartedWorker | undefined;
  // One hook, in this order: the worker's spare writable-layer disk stays mounted under dir until it has closed.
  t.after(async () => {
    await worker?.close(5000);
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  worker = await startWorker({
    gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), logger: pino({ level: "silent" }),
    runtime: "runc", name: "b9gpur", subnet: "10.219.247.0/24", workerId: "gpu-real", devices,
  });
  await worker.connected;
  const lines: string[] = [];
  worker.worker.events.on("log", (_id, line) => lines.push(line.line));
  const res = await request(`${gateway.url}/api/v1/container`, {
    method: "POST", headers: { authorization: `Bearer ${gateway.bootstrap!.token.key}`, "content-type": "application/json" },
    body: JSON.stringify({
      command: ["sh", "-c", 'echo "cuda=$CUDA_VISIBLE_DEVICES"; ls /dev | grep -E "^nvidia[0-9]+$"; nvidia-smi --query-gpu=uuid --format=csv,noheader -i "$CUDA_VISIBLE_DEVICES"'],
      gpu: devices[0]!.type, gpuCount: 1, memory: 512,
    }),
  });
  const { id } = (await res.body.json()) as { id: string };
  assert.equal(res.statusCode, 201);
  const done = await waitFor("GPU container exited", () => worker.worker.listContainers().find((c) => c.containerId === id && c.state.state === "EXITED"));
  assert.equal(done.state.exitCode, 0, `${done.state.message ?? ""}\n${lines.join("\n")}`);
  const assigned = devices[0]!.devices.find((d) => d.index === done.gpuIndices[0])!;
  assert.deepEqual(lines, [`cuda=${assigned.uuid}`, assigned.nodes[0]!.slice(5), assigned.uuid]);
});
