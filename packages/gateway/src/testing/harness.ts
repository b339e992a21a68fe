/** A gateway app on a real SQLite file in a temp dir, driven without a socket (`app.inject`). */
import { resolveQuotas, type WorkspaceQuotas } from "../quotas.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildGatewayApp } from "../app.js";
import { ObjectStore } from "../objects/object-store.js";
import { ContainerRegistry } from "../scheduler/containers.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { ImageBuilds } from "../images/image-builds.js";
import { Autoscaler } from "../workloads/autoscaler.js";
import { TaskDispatcher } from "../tasks/dispatcher.js";
import { SqliteStore } from "../store/sqlite/store.js";
import { VERSION } from "../version.js";
import type { LogStore } from "../logs/types.js";

export interface TestGateway {
  app: FastifyInstance;
  scheduler: Scheduler;
  builds: ImageBuilds;
  store: SqliteStore;
  dir: string;
  adminKey: string;
  workspaceId: string;
  request(method: string, url: string, options?: { key?: string | null; body?: unknown; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function createTestGateway(
  options: {
    maxObjectBytes?: number; backlogTimeoutMs?: number; requestTimeoutMs?: number; connectionsCheckingIntervalMs?: number;
    /** The data dir (kept at close); default: a temp dir, removed at close. */
    dir?: string;
    /** Per-workspace limits (unset: DEFAULT_QUOTAS; the environment is not read). */
    quotas?: Partial<WorkspaceQuotas>;
    /** The durable log store the routes read (unset: the routes keep one in memory). */
    logs?: LogStore;
  } = {},
): Promise<TestGateway> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "beta9-gw-test-"));
  const store = new SqliteStore(join(dir, "gateway.db"));
  const objects = new ObjectStore(join(dir, "objects"), options.maxObjectBytes ?? 1024 * 1024);
  await objects.init();
  const boot = await store.workspaces.bootstrap("default");
  if (!boot) throw new Error("bootstrap did not run on an empty store");
  const quotas = resolveQuotas(options.quotas, {});
  const scheduler = new Scheduler(new ContainerRegistry(), { backlogTimeoutMs: options.backlogTimeoutMs ?? 60_000, quotas });
  const builds = new ImageBuilds({ dir: join(dir, "images"), images: store.images, scheduler, workerWaitMs: 200, quotas });
  await builds.init();
  const autoscaler = new Autoscaler({ scheduler, acquireTimeoutMs: 500 });
  const dispatcher = new TaskDispatcher({ store, autoscaler });
  const app = await buildGatewayApp({ store, objects, scheduler, builds, autoscaler, dispatcher, quotas, ...(options.logs && { logs: options.logs }), version: VERSION, schemaVersion: store.schemaVersion, startedAt: Date.now() }, false, {
    ...(options.requestTimeoutMs !== undefined && { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.connectionsCheckingIntervalMs !== undefined && { connectionsCheckingIntervalMs: options.connectionsCheckingIntervalMs }),
  });
  const adminKey = boot.token.key;
  return {
    app, scheduler, builds, store, dir, adminKey, workspaceId: boot.workspace.id,
    request(method, url, { key = adminKey, body, headers = {} } = {}) {
      const allHeaders: Record<string, string> = { ...headers };
      if (key !== null) allHeaders.authorization = `Bearer ${key}`;
      let payload: string | Buffer | undefined;
      if (Buffer.isBuffer(body) || typeof body === "string") payload = body;
      else if (body !== undefined) {
        payload = JSON.stringify(body);
        allHeaders["content-type"] ??= "application/json";
      }
      return app.inject({ method: method as "GET", url, headers: allHeaders, ...(payload !== undefined && { payload }) });
    },
    async close() {
      await app.close();
      dispatcher.close();
      autoscaler.close();
      scheduler.close();
      await store.close();
      if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
