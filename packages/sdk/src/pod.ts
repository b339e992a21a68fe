/**
 * `Pod()`: any container image running its own server, deployed behind a stable URL. No handler
 * and no runner: the image's ENTRYPOINT and CMD (or `entrypoint`) run as they are, the gateway
 * proxies HTTP (method, path, query, headers, body; streamed both ways) to its one port at
 * `/pod/<name>/…`, with a token unless `authorized: false` (then `/public/<stubId>/…` too).
 * Containers start on demand, scale by requests in flight (`concurrentRequests` per container),
 * stay warm `keepWarmSeconds` and scale to zero, like endpoints.
 *
 * @example
 * import { Image, Pod } from "beta9";
 * const web = Pod({ image: Image.fromRegistry("nginx:1.27"), ports: [80], cpu: 1, memory: "512Mi" });
 * const { url } = await web.deploy({ name: "web" });   // waits until port 80 answers
 */
import type { Deployment, StubConfigInput } from "@beta9/protocol";
import { Client } from "./client.js";
import { Image } from "./image.js";
import { QueueDepthAutoscaler, type QueueDepthAutoscalerOptions } from "./workloads.js";
import { buildImage } from "./workloads-deploy.js";

export interface PodOptions {
  /** The image to run: `Image.fromRegistry(ref)` (private registries with `credentials`), or any Image. */
  image: Image;
  /** The port its server listens on (one port; `[8000]` or `8000`). */
  ports: number[] | number;
  /** The command to run instead of the image's ENTRYPOINT and CMD. */
  entrypoint?: string[];
  env?: Record<string, string>;
  /** Names of workspace secrets, set as environment variables. */
  secrets?: string[];
  /** Cores (`2`, `0.5`) or millicores (`"500m"`). Default 1. */
  cpu?: number | string;
  /** MiB (`1024`) or a size (`"16Gi"`). Default 128 MiB. */
  memory?: number | string;
  gpu?: string | string[];
  gpuCount?: number;
  /** false: anyone with the URL may call it (no token). Default true. */
  authorized?: boolean;
  /** Requests one container serves at once before another starts (default 32). */
  concurrentRequests?: number;
  /** Seconds an idle container stays up (default 180; -1 forever). */
  keepWarmSeconds?: number;
  autoscaler?: QueueDepthAutoscaler | QueueDepthAutoscalerOptions;
  /** Ready when this path answers 2xx/3xx (default: when the port takes a connection). */
  healthPath?: string;
  /** Seconds a container may take to become ready before it is stopped and the deploy fails (default 300). */
  readyTimeout?: number;
  /** Seconds to a response's headers, and the longest gap in its body (default 180). */
  timeout?: number;
  pool?: string;
  blockNetwork?: boolean;
  allowList?: string[];
}

export interface PodDeployOptions {
  /** The deployment's name (lowercase letters, digits, '.', '_', '-'); default: from the image's name. */
  name?: string;
  client?: Client;
  /** Image build log lines. */
  onLog?: (line: string) => void;
  /** Wait until a container is ready (default true); a pod whose port never opens then fails with POD_NOT_READY. */
  wait?: boolean;
}

export interface PodDeployment {
  name: string;
  version: number;
  deployment: Deployment;
  stubId: string;
  imageId: string;
  /** The stable URL (latest version), with the slash its routes live under. */
  url: string;
  /** This version's URL. */
  versionUrl: string;
  /** Without a token: only for `authorized: false`. */
  publicUrl?: string;
  /** The container that answered first (with `wait`). */
  containerId?: string;
  warnings: string[];
}

export interface PodWorkload {
  readonly kind: "pod";
  readonly image: Image;
  /** The stub config the gateway gets (the image id is added at deploy). */
  readonly config: StubConfigInput;
  deploy(options?: PodDeployOptions): Promise<PodDeployment>;
}

const OPTION_KEYS = new Set([
  "image", "ports", "entrypoint", "env", "secrets", "cpu", "memory", "gpu", "gpuCount", "authorized", "concurrentRequests", "keepWarmSeconds",
  "autoscaler", "healthPath", "readyTimeout", "timeout", "pool", "blockNetwork", "allowList",
]);
const PASSED = ["entrypoint", "env", "secrets", "cpu", "memory", "gpu", "gpuCount", "authorized", "concurrentRequests", "keepWarmSeconds", "healthPath", "readyTimeout", "pool", "blockNetwork", "allowList"] as const;

/** A deployment name from an image reference: `ghcr.io/acme/my_server:1.2` → `my-server`. */
export function podNameFromImage(ref: string): string {
  const last = ref.replace(/@.*$/, "").split("/").pop() ?? "";
  const name = last.replace(/:.*$/, "").toLowerCase().replace(/[^a-z0-9.-]+/g, "-").replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "").slice(0, 63);
  return name || "pod";
}

/** Options → the gateway's config: only the fields given. */
function podConfig(options: PodOptions): StubConfigInput {
  const ports = Array.isArray(options.ports) ? options.ports : [options.ports];
  if (ports.length !== 1 || !ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65_535)) {
    throw new TypeError("Pod(): ports must be the one port its server listens on, e.g. [8000]");
  }
  if (options.entrypoint !== undefined && (!Array.isArray(options.entrypoint) || options.entrypoint.length === 0 || !options.entrypoint.every((a) => typeof a === "string"))) {
    throw new TypeError('Pod(): entrypoint must be a non-empty array of strings, e.g. ["python3", "-m", "http.server", "8000"]');
  }
  const config: Record<string, unknown> = { ports };
  for (const key of PASSED) if (options[key] !== undefined) config[key] = options[key];
  if (options.timeout !== undefined) config.taskPolicy = { timeout: options.timeout };
  if (options.autoscaler !== undefined) {
    const a = options.autoscaler;
    config.autoscaler = (a instanceof QueueDepthAutoscaler ? a : new QueueDepthAutoscaler(a)).toConfig();
  }
  return config as StubConfigInput;
}

/** Defines a pod: `Pod({ image, ports, entrypoint, env, cpu, memory, gpu, authorized })`; `.deploy()` publishes it. */
export function Pod(options: PodOptions): PodWorkload {
  if (typeof options !== "object" || options === null) throw new TypeError("Pod(): pass an options object: { image, ports }");
  const unknown = Object.keys(options).filter((k) => !OPTION_KEYS.has(k));
  if (unknown.length > 0) throw new TypeError(`Pod(): unknown option ${unknown.join(", ")}; known: ${[...OPTION_KEYS].join(", ")}`);
  if (!(options.image instanceof Image)) throw new TypeError('Pod(): image must be an Image, e.g. Image.fromRegistry("nginx:1.27")');
  const config = Object.freeze(podConfig(options));
  const image = options.image;
  return Object.freeze({
    kind: "pod" as const,
    image,
    config,
    deploy: async (deployOptions: PodDeployOptions = {}) => {
      const client = deployOptions.client ?? new Client();
      try {
        return await deployPod(client, { image, config }, deployOptions);
      } finally {
        if (!deployOptions.client) await client.close();
      }
    },
  });
}

/** Builds the image, gets or creates the pod's stub, deploys a new version and (by default) waits until it is ready. */
export async function deployPod(client: Client, pod: { image: Image; config: StubConfigInput }, options: PodDeployOptions = {}): Promise<PodDeployment> {
  const spec = pod.image.toSpec();
  const name = options.name ?? podNameFromImage(spec.base.kind === "registry" ? spec.base.ref : "pod");
  const imageId = await buildImage(client, spec, options.onLog);
  const { stub, warnings = [] } = await client.createStub({ name, type: "pod/deployment", config: { ...pod.config, imageId } });
  const deployment = await client.createDeployment({ stubId: stub.id, name });
  const base = `${client.gateway}/pod/${deployment.name}`;
  const result: PodDeployment = {
    name: deployment.name, version: deployment.version, deployment, stubId: stub.id, imageId, warnings,
    url: `${base}/`, versionUrl: `${base}/v${deployment.version}/`,
    ...(stub.config.authorized === false && { publicUrl: `${client.gateway}/public/${stub.id}/` }),
  };
  if (options.wait === false) return result;
  const warmed = await warmDeployment(client, deployment.id);
  return { ...result, containerId: warmed.containerId };
}

/** Starts a container of the deployment when none runs and resolves once one is ready. */
export function warmDeployment(client: Client, deploymentId: string): Promise<{ deploymentId: string; stubId: string; containerId: string }> {
  return client.request("POST", `/deployment/${encodeURIComponent(deploymentId)}/warm`, { longWait: true });
}
