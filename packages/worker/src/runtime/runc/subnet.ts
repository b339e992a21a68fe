/** IPv4 subnet arithmetic and the per-runtime address allocator for container IPs. */

export interface Subnet {
  /** Canonical "a.b.c.d/p". */
  cidr: string;
  prefix: number;
  /** Network address as an unsigned 32-bit integer. */
  network: number;
  /** .1: the bridge's own address, the containers' default gateway. */
  gateway: string;
}

export function ipToInt(ip: string): number {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`invalid IPv4 address ${ip}`);
  return parts.reduce((acc, part) => acc * 256 + part, 0);
}

export function intToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

export function parseSubnet(cidr: string): Subnet {
  const [address, prefixText] = cidr.split("/");
  const prefix = Number(prefixText);
  if (!address || !Number.isInteger(prefix) || prefix < 8 || prefix > 29) {
    throw new Error(`invalid subnet ${JSON.stringify(cidr)}: expected a.b.c.d/p with 8 <= p <= 29`);
  }
  const size = 2 ** (32 - prefix);
  const network = ipToInt(address) - (ipToInt(address) % size);
  return { cidr: `${intToIp(network)}/${prefix}`, prefix, network, gateway: intToIp(network + 1) };
}

export function subnetContains(subnet: Subnet, ip: string): boolean {
  const size = 2 ** (32 - subnet.prefix);
  const value = ipToInt(ip);
  return value >= subnet.network && value < subnet.network + size;
}

/** Hands out .2 … broadcast-1; lowest free first, so addresses are reused as containers come and go. */
export class AddressPool {
  private readonly used = new Set<number>();
  private readonly first: number;
  private readonly last: number;

  constructor(readonly subnet: Subnet) {
    this.first = subnet.network + 2;
    this.last = subnet.network + 2 ** (32 - subnet.prefix) - 2;
  }

  allocate(): string {
    for (let candidate = this.first; candidate <= this.last; candidate++) {
      if (!this.used.has(candidate)) {
        this.used.add(candidate);
        return intToIp(candidate);
      }
    }
    throw new Error(`no free address left in ${this.subnet.cidr}`);
  }

  release(ip: string): void {
    this.used.delete(ipToInt(ip));
  }
}
