/**
 * What a stub's container is started with: the runner (with its per-container secret) for code
 * workloads, or the image's own server for a pod. Same placement, limits, volumes and egress.
 */
import { randomUUID } from "node:crypto";
import type { ContainerRequest, Stub } from "@beta9/protocol";
import { podContainerParts, podOf } from "./pod.js";
import { RUNNER_SERVED_PORT, runnerContainerParts } from "./runner-client.js";

type SecretEnv = (workspaceId: string, names: readonly string[]) => Record<string, string>;

/** The port the gateway reaches a container of the stub on. */
export function servedPort(stub: Stub): number {
  return podOf(stub)?.port ?? RUNNER_SERVED_PORT;
}

/** `perContainer`: parallel invocations the runner serves; `secretEnv`: the stub's named secrets' values. */
export function containerRequest(stub: Stub, secret: string, perContainer: number, secretEnv?: SecretEnv): ContainerRequest {
  const { config } = stub;
  const env = { ...config.env, ...(config.secrets.length > 0 && secretEnv?.(stub.workspaceId, config.secrets)), BETA9_STUB_ID: stub.id };
  const common = {
    containerId: randomUUID(), workspaceId: stub.workspaceId, stubId: stub.id, imageId: config.imageId,
    cpuMillicores: config.cpuMillicores, memoryMiB: config.memoryMiB, gpu: config.gpu, gpuCount: config.gpuCount, pool: config.pool,
    ...(config.volumes?.length && { volumes: config.volumes }),
    ...(config.egress && { egress: config.egress }),
  };
  const pod = podOf(stub);
  // A pod is the tenant's own server: no runner, no runner secret.
  if (pod) return { ...common, ...podContainerParts(pod), env };
  const runner = runnerContainerParts(secret);
  return {
    ...common, command: runner.command, ports: runner.ports, env: { ...env, ...runner.env },
    runner: { codeObjectId: stub.objectId!, handler: config.handler!, concurrency: perContainer },
  };
}
