/**
 * Pods: any image running its own server on one port, behind the gateway (api/pods.ts). They use
 * the same per-stub pool as endpoints (instance-pool.ts: slots, waiters, keep-warm, scale to zero,
 * crash detection); what differs is kept here: what the container runs, which port is served, and
 * how readiness is told, since there is no runner to answer /health.
 */
import { request } from "undici";
import { Beta9Error, type ContainerRequest, type Stub } from "@beta9/protocol";

/** How long one readiness probe may wait for an answer. */
const PROBE_TIMEOUT_MS = 2000;
/** Pause between probes of a container that is not ready yet. */
export const POD_PROBE_INTERVAL_MS = 25;
/** Log lines of the failed container quoted in a pod's readiness error. */
export const POD_TAIL_LINES = 20;

export type PodConfig = NonNullable<Stub["config"]["pod"]>;

export function podOf(stub: Stub): PodConfig | undefined {
  return stub.type.startsWith("pod/") ? stub.config.pod : undefined;
}

/**
 * What a pod's container request runs: its entrypoint, or (none given) the image's own ENTRYPOINT
 * and CMD, which the worker reads from the image (`command` is then a placeholder it replaces).
 * No runner and no runner secret: the container is the tenant's server, reached on its one port.
 */
export function podContainerParts(pod: PodConfig): Pick<ContainerRequest, "command" | "ports"> & { imageCommand?: true } {
  return pod.entrypoint ? { command: pod.entrypoint, ports: [pod.port] } : { command: ["(image command)"], imageCommand: true, ports: [pod.port] };
}

/**
 * Whether the pod's server is ready. With a health path: that path answers below 400. Without:
 * its port takes a connection, proven by an HTTP exchange rather than a bare connect, since
 * through a machine tunnel the gateway's own loopback listener accepts every connection and
 * closes it only once the worker finds the container's port shut. So any answer, or a
 * connection the server holds open past the probe's timeout, means something listens; a refused,
 * reset or closed connection means nothing does yet.
 */
export async function probePod(origin: string, healthPath: string | null): Promise<boolean> {
  try {
    const res = await request(`${origin}${healthPath ?? "/"}`, {
      method: "GET", headers: { "user-agent": "beta9-pod-probe" }, headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS,
    });
    await res.body.dump().catch(() => undefined); // at most undici's dump limit is read; the rest is dropped
    return healthPath === null || res.statusCode < 400;
  } catch (err) {
    return healthPath === null && (err as { code?: string }).code === "UND_ERR_HEADERS_TIMEOUT";
  }
}

/** The error waiters of a pod get when its container never became ready (bounded wait or early exit). */
export function podNotReady(stub: Stub, containerId: string, why: string, lastLines: readonly string[]): Beta9Error {
  const tail = lastLines.length > 0 ? `; its last log lines:\n${lastLines.join("\n")}\n` : "; it printed nothing";
  return new Beta9Error("POD_NOT_READY", { name: stub.name, reason: `${why}${tail}`, containerId }, { containerId, lastLines });
}

/** Why the pod's port did not open in time, in words (the port and the bound). */
export function notReadyInTime(pod: PodConfig): string {
  const what = pod.healthPath ? `its health path ${pod.healthPath} on port ${pod.port} did not answer 2xx/3xx` : `its port ${pod.port} did not open`;
  return `${what} within ${pod.readyTimeout} s (readyTimeout), so its container was stopped`;
}
