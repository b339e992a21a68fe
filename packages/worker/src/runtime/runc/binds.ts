/**
 * With a user namespace, binds are idmapped clones attached under the container dir
 * (binds/<n>, made by the mount helper), and config.json binds those instead of the originals:
 * runc 1.1 cannot idmap a bind itself.
 */
import { join } from "node:path";
import type { ContainerSpec, Mount } from "../types.js";

export interface EtcFiles {
  hosts: string;
  hostname: string;
}

export interface MappedBinds {
  binds: { source: string; target: string }[];
  /** The spec with each mount's source replaced by its clone. */
  spec: (spec: ContainerSpec) => ContainerSpec;
  etc: EtcFiles;
}

export function mappedBinds(containerDir: string, mounts: readonly Mount[], etc: EtcFiles): MappedBinds {
  const sources = [...mounts.map((mount) => mount.source), etc.hosts, etc.hostname];
  const targets = sources.map((_, index) => join(containerDir, "binds", String(index)));
  const mapped = (mount: Mount, index: number): Mount => ({ ...mount, source: targets[index]! });
  return {
    binds: sources.map((source, index) => ({ source, target: targets[index]! })),
    spec: (spec) => ({ ...spec, mounts: (spec.mounts ?? []).map(mapped) }),
    etc: { hosts: targets[mounts.length]!, hostname: targets[mounts.length + 1]! },
  };
}
