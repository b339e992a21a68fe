// WebSocket echo through the gateway, end to end, on a local runc worker: a realtime() endpoint on
// Image.scratch() that echoes every message, deployed with the CLI. Messages per second through
// `ws://gateway/endpoint/<name>` against the floor: the same socket straight to the container's
// runner (`/realtime` with its secret). A client in a child process keeps SOCKETS sockets busy,
// one small message in flight on each (send, await the echo, send again); alternating rounds, medians.
// CPU per message, next to it: the gateway's (this process, which also hosts the idle worker) and
// the container's (its processes' utime+stime from /proc), since on a shared 2-core machine the
// load generator, the gateway and the container compete for the same cores.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, gatewayClient, median, runnerSecret } from "./lib.mjs";

const ROUNDS = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 5));
const SECONDS = 3;
const SOCKETS = 10;
const BYTES = 64;
const NAME = "b9ws";
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const cliMain = here("../packages/cli/dist/main.js");

// A plain workload object (what realtime() returns), so the file needs no import; the image spec is Image.scratch()'s.
const APP = `
export const echo = {
  __beta9Workload: true, kind: "endpoint", name: ${JSON.stringify(NAME)},
  image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
  config: { cpu: 1, memory: "256Mi", keepWarmSeconds: 3600, concurrentRequests: 64, realtime: true },
  handler: async (socket) => { for await (const message of socket) await socket.send(message); },
};
`;

function beta9(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliMain, ...args], { env: { ...process.env, ...env, NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** CPU seconds used so far by the processes of a container (found by its id in their cgroup). */
function containerCpuS(containerId) {
  const tick = 100; // USER_HZ
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cgroup`, "utf8").includes(containerId)) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

/** One round in a child process: messages per second over SOCKETS sockets for SECONDS. */
async function round(target, seconds = SECONDS) {
  const args = JSON.stringify({ ...target, sockets: SOCKETS, seconds, bytes: BYTES });
  const child = spawn(process.execPath, [here("./servers/ws-echo-load.mjs"), args], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`WebSocket load exited with ${code}`)));
  });
  const { messages, seconds: took } = JSON.parse(line);
  return { rate: messages / took, messages };
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "websocket", skipped: unavailable, print() { console.log(`\n## websocket: skipped (${unavailable})`); } };
  // A fixed dir: a run killed before its cleanup is cleaned up by the next one (startWorker reaps the same state dir and name).
  const dir = join(tmpdir(), "beta9-bench-websocket");
  if (existsSync(dir)) for (const entry of readdirSync(dir)) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const rates = { direct: [], gateway: [] };
  // CPU µs per message, per round: the container's (both targets) and the gateway's (through it).
  const cpu = { runnerDirect: [], runnerGateway: [], gateway: [] };
  let gateway;
  let worker;
  let gw;
  try {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "warn" });
    const key = gateway.bootstrap.token.key;
    gw = gatewayClient(gateway.url, key);
    const workerDir = join(dir, "worker");
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: workerDir, logger: pino({ level: "warn" }),
      runtime: "runc", name: "b9ws", subnet: "10.219.235.0/24", workerId: "bench-websocket",
    });
    await worker.connected;
    const app = join(dir, "app.mjs");
    writeFileSync(app, APP);
    const deployed = await beta9(["deploy", `${app}:echo`, "--json", "-q"], { BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg") });
    if (deployed.code !== 0) throw new Error(`beta9 deploy failed (${deployed.code}): ${deployed.stderr}`);
    const stubId = JSON.parse(deployed.stdout).stubId;
    const target = { gateway: { url: `${gateway.url.replace(/^http/, "ws")}/endpoint/${NAME}`, headers: { ...gw.auth } } };
    await round(target.gateway, 1); // scales from zero, then warms JIT
    const [container] = await gw.active(stubId);
    const addr = (await gw.api("GET", `/api/v1/container/${container.id}`)).ports["8000"];
    target.direct = { url: `ws://${addr.host}:${addr.port}/realtime`, headers: { authorization: `Bearer ${runnerSecret(workerDir, container.id)}` } };
    await round(target.direct, 1);
    for (let i = 0; i < ROUNDS; i++) {
      for (const name of ["direct", "gateway"]) {
        const runner0 = containerCpuS(container.id);
        const gateway0 = process.cpuUsage();
        const { rate, messages } = await round(target[name]);
        const gatewayUs = process.cpuUsage(gateway0);
        const runnerUs = (containerCpuS(container.id) - runner0) * 1e6;
        rates[name].push(rate);
        if (name === "direct") cpu.runnerDirect.push(runnerUs / messages);
        else {
          cpu.runnerGateway.push(runnerUs / messages);
          cpu.gateway.push((gatewayUs.user + gatewayUs.system) / messages);
        }
      }
    }
  } finally {
    await gw?.stopAll();
    await worker?.close(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const rate = { direct: median(rates.direct), gateway: median(rates.gateway) };
  const ratio = rate.gateway / rate.direct;
  const us = { runnerDirect: median(cpu.runnerDirect), runnerGateway: median(cpu.runnerGateway), gateway: median(cpu.gateway) };
  return {
    name: `websocket: echo of ${BYTES}-byte messages on ${SOCKETS} sockets (realtime() on Image.scratch(), runc worker)`,
    sockets: SOCKETS, bytes: BYTES, rounds: ROUNDS, seconds: SECONDS, goal: "messages/s ratio >= 0.6",
    direct: { messagesPerS: rate.direct, runnerCpuUsPerMessage: us.runnerDirect },
    gateway: { messagesPerS: rate.gateway, runnerCpuUsPerMessage: us.runnerGateway, gatewayCpuUsPerMessage: us.gateway }, ratio,
    directAll: rates.direct, gatewayAll: rates.gateway,
    print() {
      console.log(`\n## ${this.name}`);
      console.log(`  ${ROUNDS} alternating rounds of ${SECONDS} s each, one message in flight per socket, medians`);
      console.log(`    floor   straight to the container's /realtime   ${fmt(rate.direct).padStart(10)} messages/s`);
      console.log(`    subject ws://…/endpoint/${NAME}                 ${fmt(rate.gateway).padStart(10)} messages/s`);
      console.log(`    ratio ${fmt(ratio, 2)} (goal >= 0.6)`);
      console.log(`  CPU per message (medians): container ${fmt(us.runnerDirect, 1)} µs direct, ${fmt(us.runnerGateway, 1)} µs through the gateway; gateway ${fmt(us.gateway, 1)} µs`);
    },
  };
}
