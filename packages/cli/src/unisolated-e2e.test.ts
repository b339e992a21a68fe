/**
 * Security: a worker whose runtime isolates nothing (the process runtime, picked where runc
 * cannot run) never runs untrusted work unless its operator opted in with --allow-unisolated.
 * On a real gateway with a real process-runtime worker: sandboxes, containers and image builds
 * are refused with the reason and the fix; a workload deploys with that warning and its calls
 * answer 503 CAPACITY_UNAVAILABLE; nothing ran on the host.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { startWorker, type StartedWorker } from "@beta9/worker";

const FIX = /isolates nothing.*apt-get install runc.*--allow-unisolated/;

describe("security: untrusted work on a worker that isolates nothing", () => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-unisolated-"));
  let gateway: RunningGateway;
  let worker: StartedWorker;
  let auth: Record<string, string>;
  const api = async (method: "GET" | "POST", path: string, body?: unknown) => {
    const res = await request(`${gateway.url}${path}`, { method, headers: auth, ...(body !== undefined && { body: JSON.stringify(body) }) });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  };

  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent" });
    auth = { authorization: `Bearer ${gateway.bootstrap!.token.key}`, "content-type": "application/json" };
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"),
      logger: pino({ level: "silent" }), runtime: "process", workerId: "bare",
    });
    await worker.connected;
  });

  after(async () => {
    await worker?.close(1000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a sandbox on a process-runtime worker is refused, naming the reason and the fix; nothing is stored", async () => {
    const res = await api("POST", "/api/v1/sandbox", {});
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, "CAPACITY_UNAVAILABLE");
    assert.match(res.body.error.message, FIX);
    assert.deepEqual((await api("GET", "/api/v1/sandbox")).body.items, []);
  });

  test("a container is refused the same way and nothing runs on the worker", async () => {
    const res = await api("POST", "/api/v1/container", { command: ["sh", "-c", "cat /root/.beta9/config.json"] });
    assert.equal(res.status, 503);
    assert.match(res.body.error.message, FIX);
    assert.deepEqual(worker.worker.listContainers(), []);
  });

  test("an image build is refused: the build runs the image author's commands", async () => {
    const res = await api("POST", "/api/v1/image/build", { spec: { base: { kind: "default" }, steps: [{ kind: "shell", command: "id" }], env: {} } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    let image = res.body;
    for (let i = 0; i < 200 && image.status !== "failed"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      image = (await api("GET", `/api/v1/image/${res.body.id}`)).body;
    }
    assert.equal(image.status, "failed");
    assert.match(image.error, FIX);
  });

  test("with --allow-unisolated the same worker takes containers (the operator's explicit choice)", async () => {
    const trusted = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker-trusted"),
      logger: pino({ level: "silent" }), runtime: "process", workerId: "trusted", allowUnisolated: true, name: "t",
    });
    try {
      await trusted.connected;
      const res = await api("POST", "/api/v1/container", { command: ["true"] });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.workerId ?? "trusted", "trusted");
    } finally {
      await trusted.close(1000);
    }
  });
});
