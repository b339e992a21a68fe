/**
 * Starts a worker the way `beta9 worker` and `beta9 up` do: pick the runtime, reap what a
 * crashed predecessor left in the same state dir, prepare the runner bundle, and dial the gateway.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import type { WorkerCapacity } from "@beta9/protocol";
import { ensureRunnerBundle } from "./runner-bundle.js";
import { fetchImage, gatewayEndpoint } from "./gateway-http.js";
import { parseGatewayUrls } from "./gateway-list.js";
import { ImageCache } from "./images/index.js";
import { selectRuntime, type RuntimePreference } from "./select-runtime.js";
import type { Runtime } from "./runtime/types.js";
import { Worker, type ImageProvider } from "./worker.js";
import { detectDevices, type DeviceGroup } from "./devices/index.js";

export interface StartWorkerOptions {
  /** One gateway, or several (a list or comma-separated): the worker moves to the next when one is lost. */
  gatewayUrl: string | readonly string[];
  token: string;
  /** The gateway's own certificate (PEM) to trust on its https:// URL. */
  tlsCa?: string;
  stateDir: string;
  logger: Logger;
  runtime?: RuntimePreference;
  /** Prefix of the runtime's host objects; distinct per worker on one machine (default "w"). */
  name?: string;
  subnet?: string;
  /** Destinations containers may reach although the default egress policy denies them (see RuncRuntimeOptions.egressAllow). */
  egressAllow?: string[];
  /** See RuncRuntimeOptions.userns / writableLayerMiB. */
  userns?: boolean;
  writableLayerMiB?: number;
  pool?: string;
  workerId?: string;
  capacity?: Partial<WorkerCapacity>;
  /** Bytes of packed images kept on disk (default 20 GiB); unused ones are evicted first. */
  imageCacheBytes?: number;
  version?: string;
  /** See WorkerOptions.reachable: unset lets the gateway decide whether to tunnel. */
  reachable?: boolean;
  /** See WorkerOptions.allowPrivateRegistries. */
  allowPrivateRegistries?: boolean;
  /** See WorkerOptions.allowUnisolated. */
  allowUnisolated?: boolean;
  /** See WorkerOptions.primaryCheckMs. */
  primaryCheckMs?: number;
  /** Accelerators to offer; detected here (nvidia-smi, rocm-smi, sysfs, …) when not given. */
  devices?: DeviceGroup[];
}

export interface StartedWorker {
  worker: Worker;
  runtime: Runtime;
  /** Resolves once the gateway welcomed the worker the first time. */
  connected: Promise<void>;
  close(graceMs?: number): Promise<void>;
}

export async function startWorker(options: StartWorkerOptions): Promise<StartedWorker> {
  mkdirSync(join(options.stateDir, "process"), { recursive: true, mode: 0o700 });
  const runtime = selectRuntime(options.runtime ?? "auto", {
    stateDir: options.stateDir, name: options.name ?? "w", ...(options.subnet !== undefined && { subnet: options.subnet }),
    ...(options.egressAllow?.length && { egressAllow: options.egressAllow }),
    ...(options.userns === false && { userns: false }),
    ...(options.writableLayerMiB !== undefined && { writableLayerMiB: options.writableLayerMiB }),
  }, options.logger);
  const reaped = await runtime.reap();
  if (Object.values(reaped).some((n) => n > 0)) options.logger.warn({ reaped }, "removed what a previous worker left behind");
  const runner = ensureRunnerBundle(options.stateDir);
  const urls = parseGatewayUrls(options.gatewayUrl);
  // One endpoint for the worker's HTTP calls and the image cache's: it follows the gateway the worker is connected to.
  const gateway = gatewayEndpoint(urls[0]!, options.token, options.tlsCa);
  const cache = new ImageCache({
    dir: join(options.stateDir, "image-cache"),
    maxBytes: options.imageCacheBytes ?? 20 * 1024 ** 3,
    fetch: (id, dest) => fetchImage(gateway, id, dest),
  });
  const images: ImageProvider = { acquire: (id) => cache.acquire(id) };
  const devices = options.devices ?? await detectDevices({ warn: (message) => options.logger.warn(message) });
  if (devices.length > 0) options.logger.info({ gpus: devices.map((g) => `${g.count}x ${g.type}`) }, "accelerators detected");
  const worker = new Worker({
    gatewayUrl: urls, endpoint: gateway, token: options.token, ...(options.tlsCa && { tlsCa: options.tlsCa }), runtime, runner, stateDir: options.stateDir, logger: options.logger,
    ...(options.pool !== undefined && { pool: options.pool }),
    workerId: options.workerId ?? persistentWorkerId(options.stateDir),
    ...(options.capacity !== undefined && { capacity: options.capacity }),
    images, devices,
    ...(options.version !== undefined && { version: options.version }),
    ...(options.reachable !== undefined && { reachable: options.reachable }),
    ...(options.allowUnisolated !== undefined && { allowUnisolated: options.allowUnisolated }),
    ...(options.primaryCheckMs !== undefined && { primaryCheckMs: options.primaryCheckMs }),
    ...(options.allowPrivateRegistries !== undefined && { allowPrivateRegistries: options.allowPrivateRegistries }),
  });
  if (!runtime.isolates && options.allowUnisolated !== true) {
    process.stderr.write("This worker takes no containers until it is restarted with --allow-unisolated (trusted code only), " +
      "or runs runc as root (apt-get install runc).\n\n");
  }
  const connected = worker.start();
  return {
    worker, runtime, connected,
    async close(graceMs = 10_000) {
      await worker.close(graceMs);
      await runtime.close(graceMs);
      await cache.close();
    },
  };
}

/**
 * The id a worker started without one keeps across restarts (kept in its state dir): a worker
 * killed with -9 and started again is then the same worker to the gateway, which reconciles its
 * containers at once (those it no longer runs are lost, their work rescheduled) instead of waiting
 * for the old id's worker timeout while its dead containers still count against maxContainers.
 */
export function persistentWorkerId(stateDir: string): string {
  const file = join(stateDir, "worker-id");
  try {
    const kept = readFileSync(file, "utf8").trim();
    if (/^[A-Za-z0-9._-]{1,128}$/.test(kept)) return kept;
  } catch {
    // first start on this state dir
  }
  const id = `${hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 100)}-${randomUUID().slice(0, 8)}`;
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}
