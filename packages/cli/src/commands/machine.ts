/** `beta9 machine`: external machines (b9agent) of the current workspace. */
import { X509Certificate } from "node:crypto";
import type { Command } from "commander";
import type { Machine, MachineCreateResponse } from "@beta9/protocol";
import { ApiError, type Client } from "beta9";
import { forEachId, withClient } from "../session.js";
import { resolveRef } from "../resolve.js";
import { color, print, printJson, printTable, shortTime } from "../output.js";

const enc = encodeURIComponent;

function stateCell(m: Machine): string {
  const state = m.state === "ready" ? color.green(m.state) : m.state === "expired" ? color.red(m.state) : color.yellow(m.state);
  const flags = [m.draining ? "draining" : m.cordoned ? "cordoned" : "", m.workerConnected ? "" : "no worker"].filter(Boolean);
  return flags.length > 0 ? `${state} (${flags.join(", ")})` : state;
}

function gpuCell(m: Machine): string {
  const inventory = m.gpus.filter((g) => g.count > 0).map((g) => `${g.count}× ${g.type}`).join(", ");
  if (!inventory) return "-";
  return m.metrics ? `${inventory} (${m.metrics.gpus.free} free)` : inventory;
}

const percent = (value: number | undefined) => (value === undefined ? "-" : `${Math.round(value)}%`);

/** A machine by id, a unique start of its id, or its hostname. */
const machineId = (client: Client, ref: string) =>
  resolveRef("machine", ref, async () => (await listMachines(client)).map((m) => ({ id: m.id, names: m.hostname ? [m.hostname] : [] })));

export async function listMachines(client: Client, pool?: string): Promise<Machine[]> {
  const page = await client.request<{ items: Machine[] }>("GET", "/machine", { query: { pool } });
  return page.items;
}

export function registerMachine(program: Command): void {
  const machine = program.command("machine").description("manage external machines that run work through b9agent");

  machine
    .command("create")
    .description("create a machine and its token (shown once), and print the b9agent line to run on it")
    .requiredOption("--pool <name>", "the pool the machine serves; one that does not exist yet is created (admin token)")
    .option("--json", "print the machine and its token as JSON")
    .action((opts: { pool: string; json?: boolean }, command: Command) =>
      withClient(command, async (client, context) => {
        const create = () => client.request<MachineCreateResponse>("POST", "/machine", { body: { pool: opts.pool } });
        const created = await create().catch(async (err: unknown) => {
          // As in beta9, naming a pool is enough: the first machine of a pool creates it.
          if (!(err instanceof ApiError && err.code === "POOL_NOT_FOUND")) throw err;
          await client.request("POST", "/pool", { body: { name: opts.pool } }).catch((poolErr: unknown) => {
            throw poolErr instanceof ApiError && poolErr.status === 403
              ? new ApiError(404, "POOL_NOT_FOUND", `${err.message}; an admin can create it: beta9 pool create ${opts.pool}`) : poolErr;
          });
          process.stderr.write(`created pool ${opts.pool}\n`); // stderr: --json output stays parseable
          return create();
        });
        if (opts.json) return printJson(created);
        print(`created machine ${created.machine.id} in pool ${created.machine.pool} (state ${created.machine.state})`);
        print(`machine token (shown once, save it now): ${color.bold(created.token)}`);
        print("on the machine, run:");
        // Over TLS the agent pins the gateway's certificate by this fingerprint (checked on its first connection).
        const pin = context.tlsCa ? ` --tls-fingerprint ${new X509Certificate(context.tlsCa).fingerprint256}` : "";
        if (pin) print(`gateway certificate (SHA-256):${pin.replace(" --tls-fingerprint", "")}`);
        print(`  b9agent init --gateway ${context.gateway} --token ${created.token} --pool ${created.machine.pool}${pin} && b9agent`);
      }),
    );

  machine
    .command("list")
    .description("list machines: state, last heartbeat, CPU, memory, GPUs and running containers")
    .option("--pool <name>", "only this pool")
    .option("--json", "print a JSON array")
    .action((opts: { pool?: string; json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const list = await listMachines(client, opts.pool);
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "POOL", "STATE", "HOSTNAME", "LAST HEARTBEAT", "CPU", "MEMORY", "GPUS", "CONTAINERS"],
          list.map((m) => [
            m.id, m.pool, stateCell(m), m.hostname ?? "-", shortTime(m.lastKeepaliveAt),
            m.cpuMillicores > 0 ? `${m.cpuMillicores / 1000} cores ${percent(m.metrics?.cpuPercent)}` : "-",
            m.memoryMiB > 0 ? `${m.memoryMiB} MiB ${percent(m.metrics?.memoryPercent)}` : "-",
            gpuCell(m), String(m.runningContainers),
          ]),
          "no machines (create one with beta9 machine create --pool default)",
        );
      }),
    );

  machine
    .command("delete")
    .description("delete machines: revokes their tokens and disconnects their workers (their work is rescheduled)")
    .argument("<ids...>", "machine ids, unique starts of them, or hostnames (see beta9 machine list)")
    .action((ids: string[], _opts: unknown, command: Command) =>
      withClient(command, (client) => forEachId(ids, async (ref) => {
        const id = await machineId(client, ref);
        await client.request<Machine>("DELETE", `/machine/${enc(id)}`);
        print(`deleted machine ${id}`);
      })),
    );

  for (const [action, says] of [["cordon", "cordoned: it gets no new containers"], ["uncordon", "uncordoned: it takes new containers"]] as const) {
    machine
      .command(action)
      .description(action === "cordon" ? "stop placing new containers on machines (running ones stay)" : "let machines take new containers again (ends a drain)")
      .argument("<ids...>", "machine ids, unique starts of them, or hostnames")
      .action((ids: string[], _opts: unknown, command: Command) =>
        withClient(command, (client) => forEachId(ids, async (ref) => {
          const id = await machineId(client, ref);
          await client.request<Machine>("POST", `/machine/${enc(id)}/${action}`);
          print(`machine ${id} ${says}`);
        })),
      );
  }

  machine
    .command("drain")
    .description("cordon machines and stop their containers gracefully so their work moves to other machines")
    .argument("<ids...>", "machine ids, unique starts of them, or hostnames")
    .action((ids: string[], _opts: unknown, command: Command) =>
      withClient(command, (client) => forEachId(ids, async (ref) => {
        const id = await machineId(client, ref);
        const { stopped } = await client.request<{ machine: Machine; stopped: number }>("POST", `/machine/${enc(id)}/drain`);
        print(`machine ${id} draining: ${stopped} container${stopped === 1 ? "" : "s"} stopping`);
      })),
    );
}
