/**
 * Pods' config rules (protocol stub-config) and readiness probe, on real sockets: a port nobody
 * listens on, an HTTP server, a health path that fails, a server that takes connections and
 * never answers.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { describe, test } from "node:test";
import { normalizeStubConfig, StubConfigError } from "@beta9/protocol";
import { podContainerParts, probePod } from "./pod.js";

const IMAGE = "0123456789abcdef0123456789abcdef";

async function listening<T extends Server | ReturnType<typeof createTcpServer>>(server: T): Promise<{ server: T; origin: string }> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe("pod config", () => {
  test("a pod serves one port, runs an image, scales by concurrent requests; nothing else takes pod fields", () => {
    const config = normalizeStubConfig("pod", { imageId: IMAGE, ports: [8000], entrypoint: ["python3", "-m", "http.server"] });
    assert.deepEqual(config.pod, { port: 8000, entrypoint: ["python3", "-m", "http.server"], healthPath: null, readyTimeout: 300 });
    assert.deepEqual([config.concurrentRequests, config.autoscaler.tasksPerContainer, config.authorized], [32, 32, true]);
    assert.deepEqual(podContainerParts(config.pod!), { command: ["python3", "-m", "http.server"], ports: [8000] });
    const own = normalizeStubConfig("pod", { imageId: IMAGE, ports: [80], concurrentRequests: 4, healthPath: "/healthz", readyTimeout: 5 });
    assert.deepEqual([own.autoscaler.tasksPerContainer, own.pod?.healthPath, own.pod?.readyTimeout], [4, "/healthz", 5]);
    assert.equal(podContainerParts(own.pod!).imageCommand, true, "no entrypoint: the image's own command");
    assert.equal(normalizeStubConfig("endpoint", {}).pod, undefined, "other kinds keep their config (and hash)");

    const refused = (kind: "pod" | "endpoint", input: Parameters<typeof normalizeStubConfig>[1], field: string) =>
      assert.throws(() => normalizeStubConfig(kind, input), (err: unknown) => err instanceof StubConfigError && err.field === field);
    refused("pod", { ports: [8000] }, "imageId");
    refused("pod", { imageId: IMAGE }, "ports");
    refused("pod", { imageId: IMAGE, ports: [8000, 9000] }, "ports");
    refused("pod", { imageId: IMAGE, ports: [8000], handler: "app.ts:main" }, "handler");
    refused("endpoint", { entrypoint: ["sh"] }, "entrypoint");
    refused("endpoint", { readyTimeout: 3 }, "readyTimeout");
  });
});

describe("probePod", () => {
  test("a closed port is not ready; any HTTP answer is, unless a health path must answer below 400", async () => {
    const { server: closed, origin: closedOrigin } = await listening(createServer());
    closed.close();
    await once(closed, "close");
    assert.equal(await probePod(closedOrigin, null), false);

    const { server, origin } = await listening(createServer((req, res) => {
      res.statusCode = req.url === "/healthz" ? 200 : req.url === "/sick" ? 503 : 404;
      res.end("body");
    }));
    try {
      assert.equal(await probePod(origin, null), true, "a 404 at / still proves the port is open");
      assert.equal(await probePod(origin, "/healthz"), true);
      assert.equal(await probePod(origin, "/sick"), false);
    } finally {
      server.close();
    }
  });

  test("a server that takes the connection and never answers listens: ready without a health path, not with one", async () => {
    const sockets: Socket[] = [];
    const { server, origin } = await listening(createTcpServer((socket) => void sockets.push(socket)));
    try {
      assert.equal(await probePod(origin, null), true);
      assert.equal(await probePod(origin, "/healthz"), false);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});
