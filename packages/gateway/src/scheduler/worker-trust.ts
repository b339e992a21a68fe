/**
 * What the gateway believes of a worker's messages. A worker connected with a machine token is a
 * host some workspace user joined: it speaks the ordinary worker protocol, but nothing it says is
 * trusted beyond its own workspace and the containers the scheduler placed on it. Every message is
 * checked against the protocol schema first; state reports count only for containers placed on
 * that worker, and only for the ports their request asked for; a machine's hello may bring back
 * only its own workspace's containers; and a machine chooses no address for the gateway to dial
 * but its own public one.
 */
import { isIP } from "node:net";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import {
  WorkerMessageSchema, type ContainerRequest, type ContainerStateReport, type HostPortAddress, type WorkerMessage,
} from "@beta9/protocol";
import type { Scheduler } from "./scheduler.js";

/** Close code of a worker connection that sent a message the protocol does not allow. */
export const INVALID_MESSAGE_CLOSE_CODE = 4003;

/** A checker per message type, so an error names the field of that type's message that is wrong. */
const checkers = new Map(WorkerMessageSchema.anyOf.map((variant) => [variant.properties.type.const as string, TypeCompiler.Compile(variant)]));

/**
 * The message, or why it is not a worker message (for the error sent before closing). A message
 * of a type this gateway does not know passes as is (a newer worker's; it is answered, not fatal).
 */
export function parseWorkerMessage(value: unknown): { message: WorkerMessage } | { error: string } {
  const type = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as { type?: unknown }).type : undefined;
  if (typeof type !== "string") return { error: "invalid worker message: not an object with a string type" };
  const checker = checkers.get(type);
  if (!checker || checker.Check(value)) return { message: value as WorkerMessage };
  const first = checker.Errors(value).First();
  return { error: `invalid ${type} message: ${first ? `${first.path || "/"}: ${first.message}` : "malformed"}` };
}

type HelloContainer = ContainerStateReport & { request: ContainerRequest };

/**
 * The hello's containers the gateway adopts: a container the scheduler knows must be placed on
 * this worker; one it does not know (a gateway restart) is adopted from a machine only if it is
 * the machine's workspace's. `refused`: the ids of the others still running, to be stopped.
 */
export function acceptHelloContainers(
  scheduler: Scheduler, workerId: string, workspaceId: string | undefined, reported: HelloContainer[],
): { accepted: HelloContainer[]; refused: string[] } {
  const accepted: HelloContainer[] = [];
  const refused: string[] = [];
  const seen = new Set<string>();
  for (const report of reported) {
    if (seen.has(report.containerId)) continue;
    seen.add(report.containerId);
    const known = scheduler.containers.get(report.containerId);
    const ok = known
      ? known.workerId === workerId
      : report.request.containerId === report.containerId && (workspaceId === undefined || report.request.workspaceId === workspaceId);
    if (ok) accepted.push(report);
    else if (report.state !== "EXITED") refused.push(report.containerId);
  }
  return { accepted, refused };
}

/** The scheduler's request of a container placed on this worker, or undefined (not its container). */
export function ownRequest(scheduler: Scheduler, workerId: string, containerId: string): ContainerRequest | undefined {
  const record = scheduler.containers.get(containerId);
  return record?.workerId === workerId ? record.request : undefined;
}

/** Reported ports cut to those the request asked for. */
export function requestedPorts(request: ContainerRequest, ports: Record<string, HostPortAddress>): Record<string, HostPortAddress> {
  const out: Record<string, HostPortAddress> = {};
  for (const port of request.ports) {
    const address = ports[String(port)];
    if (address) out[String(port)] = address;
  }
  return out;
}

function unmapped(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith("::ffff:") && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** Loopback, link-local (cloud metadata) or unspecified: never an address a worker may send the gateway to. */
export function isInternalAddress(address: string): boolean {
  const a = unmapped(address);
  if (isIP(a) === 4) {
    const [x, y] = a.split(".").map(Number) as [number, number];
    return x === 127 || x === 0 || (x === 169 && y === 254);
  }
  if (isIP(a) === 6) return a === "::1" || a === "::" || /^fe[89ab]/.test(a);
  return true;
}

/**
 * Whether the gateway may dial this address directly for a machine: only the machine's own
 * address as this connection came from, and not an internal one. Anything else is tunnelled.
 */
export function machineMayRouteTo(address: HostPortAddress, remoteAddress: string | undefined): boolean {
  if (!remoteAddress || isIP(unmapped(address.host)) === 0) return false;
  return unmapped(address.host) === unmapped(remoteAddress) && !isInternalAddress(remoteAddress);
}

export interface PortRoute {
  /** The worker's connection cannot be dialled back: every port is tunnelled. */
  tunnelled: boolean;
  /** A machine's worker (then direct routes are limited to `remoteAddress`). */
  machine: boolean;
  remoteAddress: string | undefined;
  expose(containerId: string, ports: Record<string, HostPortAddress>): Promise<Record<string, HostPortAddress>>;
}

/** The addresses the gateway will use for a report's ports: requested ports only, tunnelled where needed. */
export async function routePorts<T extends ContainerStateReport>(report: T, request: ContainerRequest, route: PortRoute): Promise<T> {
  if (!report.ports) return report;
  const ports = requestedPorts(request, report.ports);
  const direct: Record<string, HostPortAddress> = {};
  const tunnel: Record<string, HostPortAddress> = {};
  for (const [port, address] of Object.entries(ports)) {
    const viaTunnel = route.tunnelled || (route.machine && !machineMayRouteTo(address, route.remoteAddress));
    (viaTunnel ? tunnel : direct)[port] = address;
  }
  const tunnelled = Object.keys(tunnel).length > 0 ? await route.expose(report.containerId, tunnel) : {};
  return { ...report, ports: { ...direct, ...tunnelled } };
}
