/**
 * Per-workspace quotas: what one tenant may hold at once, so that no workspace can take every
 * container slot, build slot or byte of the gateway's disk from the others. Limits are the
 * operator's (gateway options, or BETA9_QUOTA_* in its environment) and apply to every workspace.
 * A request past a limit is answered 429 QUOTA_EXCEEDED and changes nothing.
 */
import { Beta9Error } from "@beta9/protocol";

export interface WorkspaceQuotas {
  /** Containers not yet exited (workload containers and sandboxes alike). */
  containers: number;
  /** Sandboxes not yet terminated. */
  sandboxes: number;
  /** Image builds running at once. */
  builds: number;
  /** Bytes of stored objects (code bundles). */
  objectBytes: number;
  /** Volumes that exist. */
  volumes: number;
  /** Bytes of volume contents, each distinct content once (volumes/volume-store.ts). */
  volumeBytes: number;
  /** Bytes of the ready images the workspace uses (packed images on the gateway's disk). */
  imageBytes: number;
  /** WebSockets open through the gateway at once (each also holds a container slot). */
  webSockets: number;
  /** Largest WebSocket message (all its fragments), either way, in bytes. */
  webSocketMessageBytes: number;
}

export const DEFAULT_QUOTAS: WorkspaceQuotas = {
  containers: 200, sandboxes: 50, builds: 16, objectBytes: 20 * 1024 ** 3, volumes: 100, volumeBytes: 50 * 1024 ** 3,
  imageBytes: 100 * 1024 ** 3, webSockets: 1000, webSocketMessageBytes: 16 * 1024 ** 2,
};

const ENV: Record<keyof WorkspaceQuotas, string> = {
  containers: "BETA9_QUOTA_CONTAINERS", sandboxes: "BETA9_QUOTA_SANDBOXES", builds: "BETA9_QUOTA_BUILDS", objectBytes: "BETA9_QUOTA_OBJECT_BYTES",
  volumes: "BETA9_QUOTA_VOLUMES", volumeBytes: "BETA9_QUOTA_VOLUME_BYTES", imageBytes: "BETA9_QUOTA_IMAGE_BYTES",
  webSockets: "BETA9_QUOTA_WEBSOCKETS", webSocketMessageBytes: "BETA9_QUOTA_WEBSOCKET_MESSAGE_BYTES",
};

/** Defaults, then the environment, then explicit options; a malformed value is an error at start. */
export function resolveQuotas(options: Partial<WorkspaceQuotas> = {}, env: NodeJS.ProcessEnv = process.env): WorkspaceQuotas {
  const quotas = { ...DEFAULT_QUOTAS };
  for (const key of Object.keys(ENV) as (keyof WorkspaceQuotas)[]) {
    const text = env[ENV[key]];
    if (text !== undefined && text !== "") {
      if (!/^[0-9]{1,15}$/.test(text)) throw new Error(`${ENV[key]}=${text}: expected a whole number`);
      quotas[key] = Number(text);
    }
    if (options[key] !== undefined) quotas[key] = options[key]!;
  }
  return quotas;
}

const HINTS: Record<keyof WorkspaceQuotas, string> = {
  containers: "stop some (beta9 container list, beta9 deployment stop) or lower maxContainers",
  sandboxes: "terminate some (beta9 sandbox list)",
  builds: "wait for a build to finish, then ask again",
  objectBytes: "an operator can raise BETA9_QUOTA_OBJECT_BYTES",
  volumes: "delete some (beta9 volume list, beta9 volume delete NAME)",
  volumeBytes: "remove files (beta9 rm VOLUME:PATH) or delete a volume; an operator can raise BETA9_QUOTA_VOLUME_BYTES",
  imageBytes: "delete images this workspace no longer needs (beta9 image list, beta9 image delete ID); an operator can raise BETA9_QUOTA_IMAGE_BYTES",
  webSockets: "close some, or an operator can raise BETA9_QUOTA_WEBSOCKETS",
  webSocketMessageBytes: "send smaller messages, or an operator can raise BETA9_QUOTA_WEBSOCKET_MESSAGE_BYTES",
};

const KINDS: Record<keyof WorkspaceQuotas, string> = {
  containers: "containers running or starting", sandboxes: "live sandboxes", builds: "image builds running", objectBytes: "bytes of stored objects",
  volumes: "volumes", volumeBytes: "bytes of volume contents", imageBytes: "bytes of images",
  webSockets: "WebSockets open", webSocketMessageBytes: "bytes in one WebSocket message",
};

/** Throws QUOTA_EXCEEDED when `count` more `kind` would pass the limit (`adding`: the amount asked for). */
export function checkQuota(quotas: WorkspaceQuotas, kind: keyof WorkspaceQuotas, count: number, adding = 1): void {
  const limit = quotas[kind];
  if (count + adding > limit) throw new Beta9Error("QUOTA_EXCEEDED", { count, kind: KINDS[kind], limit, hint: HINTS[kind] });
}
