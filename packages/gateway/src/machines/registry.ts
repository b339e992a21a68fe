/**
 * The machine registry: external machines' lifecycle (pending → registered → ready → expired),
 * their cordon/drain flags, and how those reach the scheduler. State lives in the store, so a
 * restarted gateway keeps every machine and its flags; expiry is computed from the stored time of
 * the last keepalive, on a timer that runs once at start, so it survives restarts too.
 */
import type { Logger } from "pino";
import {
  Beta9Error, DEFAULT_MACHINE_EXPIRY_SECONDS, DEFAULT_MACHINE_KEEPALIVE_SECONDS, type Machine, type MachineMetrics,
} from "@beta9/protocol";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { MachineWorkerIdentity } from "../scheduler/worker-socket.js";
import type { AuthenticatedToken, MachineRegistration, Page, Store, StoredMachine } from "../store/types.js";

export interface MachineRegistryOptions {
  store: Store;
  scheduler: Scheduler;
  /** A machine without keepalive this long is expired (default 300 s). */
  expirySeconds?: number;
  /** What agents are told to use (default 60 s, capped at a third of the expiry). */
  keepaliveIntervalSeconds?: number;
  /** How long a drained container may take to stop (default 30 s). */
  drainGraceMs?: number;
  logger?: Logger;
}

/** A machine token made with `beta9 token create --type machine` belongs to no machine. */
function unboundToken(action: string): Beta9Error {
  return new Beta9Error("AUTH_FORBIDDEN", {
    tokenType: "machine", action: `${action} without a machine`, allowed: "machine, from beta9 machine create",
  });
}

export class MachineRegistry {
  readonly expirySeconds: number;
  readonly keepaliveIntervalSeconds: number;
  readonly drainGraceMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: MachineRegistryOptions) {
    this.expirySeconds = o.expirySeconds ?? DEFAULT_MACHINE_EXPIRY_SECONDS;
    // At least three keepalives fit in the expiry, so one lost request never expires a machine.
    this.keepaliveIntervalSeconds = Math.max(1, Math.min(o.keepaliveIntervalSeconds ?? DEFAULT_MACHINE_KEEPALIVE_SECONDS, Math.floor(this.expirySeconds / 3)));
    this.drainGraceMs = o.drainGraceMs ?? 30_000;
  }

  /**
   * Expires periodically. The first check waits one keepalive interval: after a gateway restart,
   * live agents get the chance to keep alive before machines silent during the outage expire.
   */
  start(): this {
    const everyMs = Math.min(30_000, Math.max(250, (this.expirySeconds * 1000) / 10));
    const tick = () => void this.expireNow().catch((err: unknown) => this.o.logger?.error({ err }, "machine expiry failed"));
    this.timer = setTimeout(() => {
      tick();
      this.timer = setInterval(tick, everyMs);
      this.timer.unref();
    }, this.keepaliveIntervalSeconds * 1000 + everyMs);
    this.timer.unref();
    return this;
  }

  close(): void {
    clearTimeout(this.timer);
    clearInterval(this.timer);
  }

  /** Expired machines leave the scheduler: their connection closes and their containers are lost. */
  async expireNow(): Promise<StoredMachine[]> {
    const cutoff = new Date(Date.now() - this.expirySeconds * 1000).toISOString();
    const expired = await this.o.store.machines.expireSilent(cutoff);
    for (const m of expired) {
      this.o.logger?.warn({ machineId: m.id, pool: m.pool, lastKeepaliveAt: m.lastKeepaliveAt }, "machine expired");
      this.o.scheduler.remove(m.id, `machine ${m.id} sent no keepalive for ${this.expirySeconds} s`);
    }
    return expired;
  }

  /** The API's view: the stored machine plus its worker's live state. */
  view(m: StoredMachine): Machine {
    const worker = this.o.scheduler.workerState(m.id);
    return {
      id: m.id, workspaceId: m.workspaceId, pool: m.pool, state: m.state, hostname: m.hostname, cpuMillicores: m.cpuMillicores,
      memoryMiB: m.memoryMiB, gpus: m.gpus, lastKeepaliveAt: m.lastKeepaliveAt, createdAt: m.createdAt, os: m.os, arch: m.arch,
      agentVersion: m.agentVersion, cordoned: m.cordoned, draining: m.draining, metrics: m.metrics,
      workerConnected: worker?.connected ?? false, runningContainers: worker?.containers ?? 0,
    };
  }

  async create(workspaceId: string, pool: string): Promise<{ machine: Machine; token: string }> {
    if (pool !== "default" && !(await this.o.store.pools.getByName(pool))) throw new Beta9Error("POOL_NOT_FOUND", { pool });
    const { machine, token } = await this.o.store.machines.create(workspaceId, pool);
    this.o.logger?.info({ machineId: machine.id, pool }, "machine created");
    return { machine: this.view(machine), token: token.key };
  }

  async list(workspaceId: string, page: Page & { pool?: string }): Promise<Machine[]> {
    return (await this.o.store.machines.list(workspaceId, page)).map((m) => this.view(m));
  }

  async get(workspaceId: string, id: string): Promise<Machine> {
    return this.view(await this.require(workspaceId, id));
  }

  async register(auth: AuthenticatedToken, info: MachineRegistration) {
    const current = await this.byToken(auth);
    const machine = await this.o.store.machines.register(current.id, info);
    if (!machine) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "machine", id: current.id });
    this.o.logger?.info({ machineId: machine.id, hostname: info.hostname, was: current.state }, "machine registered");
    return { machine: this.view(machine), keepaliveIntervalSeconds: this.keepaliveIntervalSeconds, expirySeconds: this.expirySeconds };
  }

  async keepalive(auth: AuthenticatedToken, metrics: MachineMetrics) {
    const current = await this.byToken(auth);
    const machine = await this.o.store.machines.keepalive(current.id, metrics);
    if (!machine) throw new Beta9Error("MACHINE_NOT_REGISTERED", { id: current.id, state: current.state });
    return { machine: this.view(machine) };
  }

  async cordon(workspaceId: string, id: string, cordoned: boolean): Promise<Machine> {
    await this.require(workspaceId, id);
    // Uncordoning also ends a drain: the machine takes work again.
    const machine = (await this.o.store.machines.setFlags(workspaceId, id, { cordoned, draining: false }))!;
    this.o.scheduler.setCordoned(id, cordoned);
    return this.view(machine);
  }

  /** Cordon, then stop its containers gracefully so their work is rescheduled elsewhere. */
  async drain(workspaceId: string, id: string): Promise<{ machine: Machine; stopped: number }> {
    await this.require(workspaceId, id);
    const machine = (await this.o.store.machines.setFlags(workspaceId, id, { cordoned: true, draining: true }))!;
    const stopped = this.o.scheduler.drain(id, this.drainGraceMs);
    this.o.logger?.info({ machineId: id, stopped }, "machine draining");
    return { machine: this.view(machine), stopped };
  }

  /** Revokes its token, closes its worker (its containers are lost and rescheduled), forgets it. */
  async delete(workspaceId: string, id: string): Promise<Machine> {
    const machine = await this.o.store.machines.delete(workspaceId, id);
    if (!machine) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "machine", id });
    const view = this.view(machine);
    this.o.scheduler.remove(id, `machine ${id} was deleted`);
    this.o.logger?.info({ machineId: id }, "machine deleted");
    return view;
  }

  /** For the worker socket: a machine token's worker identity, or why it is refused. */
  async workerIdentity(tokenId: string): Promise<MachineWorkerIdentity | Beta9Error> {
    const machine = await this.o.store.machines.getByToken(tokenId);
    if (!machine) return unboundToken("connect as a worker");
    if (machine.state === "expired") return new Beta9Error("MACHINE_NOT_REGISTERED", { id: machine.id, state: machine.state });
    return { workerId: machine.id, pool: machine.pool, workspaceId: machine.workspaceId, cordoned: machine.cordoned, draining: machine.draining };
  }

  private async require(workspaceId: string, id: string): Promise<StoredMachine> {
    const machine = await this.o.store.machines.get(workspaceId, id);
    if (!machine) throw new Beta9Error("RESOURCE_NOT_FOUND", { kind: "machine", id });
    return machine;
  }

  private async byToken(auth: AuthenticatedToken): Promise<StoredMachine> {
    const machine = await this.o.store.machines.getByToken(auth.id);
    if (!machine) throw unboundToken("act as a machine");
    return machine;
  }
}
