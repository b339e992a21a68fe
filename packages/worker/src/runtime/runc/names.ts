/**
 * Names of every host-visible object a RuncRuntime creates. All derive from the runtime's `name`
 * ([a-z0-9]{1,8}) followed by a '-' — a character a name cannot contain — so the prefixes of two
 * runtimes never overlap ("ab" owns `b9ab-…`, never `b9abc-…`) and reap() only touches its own.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";

export const RUNTIME_NAME_PATTERN = /^[a-z0-9]{1,8}$/;
export const CONTAINER_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Searchable (0711) by every uid, so container roots can be mounted below it; see rootfsParent. */
export const ROOTFS_BASE = "/run/beta9";

/** Linux interface names are at most 15 characters (IFNAMSIZ - 1). */
const IFNAME_MAX = 15;

export class RuntimeNames {
  constructor(
    readonly name: string,
    readonly stateDir: string,
  ) {
    if (!RUNTIME_NAME_PATTERN.test(name)) {
      throw new Error(`invalid runtime name ${JSON.stringify(name)}: must match ${RUNTIME_NAME_PATTERN}`);
    }
  }

  /** runc's own --root, never the default /run/runc, so `runc list` there only shows ours. */
  get runcRoot(): string {
    return join(this.stateDir, "runc");
  }

  get containersDir(): string {
    return join(this.stateDir, "containers");
  }

  /**
   * Where a user-namespaced container's root is mounted: runc mounts it from inside the user
   * namespace, so every dir above it must be searchable by an unprivileged uid, which a state dir
   * under /root is not. Holds only mount points (the data stays in the state dir).
   */
  get rootfsParent(): string {
    return join(ROOTFS_BASE, this.name);
  }

  rootfsMountPoint(id: string): string {
    return join(this.rootfsParent, id);
  }

  /** Spare writable-layer disks (disks.ts) until a container takes one. */
  get disksDir(): string {
    return join(this.stateDir, "disks");
  }

  containerDir(id: string): string {
    return join(this.containersDir, id);
  }

  get defaultBridge(): string {
    return `b9br-${this.name}`;
  }

  get defaultCgroupParent(): string {
    return `/beta9/${this.name}`;
  }

  get netnsPrefix(): string {
    return `b9-${this.name}-`;
  }

  netns(id: string): string {
    return `${this.netnsPrefix}${id}`;
  }

  get vethPrefix(): string {
    return `b9${this.name}-`;
  }

  /**
   * A fresh host-side veth name. Random, not derived from the id: `ip netns del` removes the old
   * pair asynchronously, so reusing a name right after a container with the same id fails with
   * "File exists".
   */
  newVeth(): string {
    const room = IFNAME_MAX - this.vethPrefix.length;
    return this.vethPrefix + randomBytes(8).toString("hex").slice(0, room);
  }

  /** Filter chains of the egress policy (egress.ts); iptables chain names are at most 28 chars. */
  get forwardChain(): string {
    return `B9-${this.name.toUpperCase()}-FWD`;
  }

  get inputChain(): string {
    return `B9-${this.name.toUpperCase()}-IN`;
  }

  get containersChain(): string {
    return `B9-${this.name.toUpperCase()}-CTR`;
  }

  /** Prefix of the per-container chains: the prefix plus the container's IPv4 address in 8 hex digits. */
  get containerChainPrefix(): string {
    return `B9-${this.name.toUpperCase()}-`;
  }

  containerChain(ip: string): string {
    const value = ip.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
    return this.containerChainPrefix + value.toString(16).toUpperCase().padStart(8, "0");
  }

  /** The nat chain that MASQUERADEs the subnet's egress; iptables chain names are at most 28 chars. */
  get postroutingChain(): string {
    return `B9-${this.name.toUpperCase()}-POST`;
  }
}
