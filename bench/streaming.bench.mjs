// Streaming through the gateway, end to end, on a local runc worker: an endpoint on
// Image.scratch() whose handler is an async generator yielding 10,000 small tokens (Server-Sent
// Events), deployed with the CLI. Tokens per second through `POST /endpoint/<name>` against the
// floor: the same request straight to the container's runner (`POST /invoke` with its secret).
// A client in a child process reads each stream to its end (one request at a time, kept-alive);
// alternating rounds, medians.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { fmt, gatewayClient, median, runnerSecret } from "./lib.mjs";

const TOKENS = 10_000;
const ROUNDS = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 5));
const PER_ROUND = 10;
const NAME = "b9stream";
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const cliMain = here("../packages/cli/dist/main.js");

// Plain workload objects (what endpoint() returns), so the file needs no import; the image spec is Image.scratch()'s.
const APP = `
export const tokens = {
  __beta9Workload: true, kind: "endpoint", name: ${JSON.stringify(NAME)},
  image: { toSpec: () => ({ base: { kind: "scratch" }, steps: [], env: {} }) },
  config: { cpu: 1, memory: "256Mi", keepWarmSeconds: 3600 },
  handler: async function* () { for (let i = 0; i < ${TOKENS}; i++) yield "tok" + i; },
};
`;
// What each answer is: "data: tok<i>\n\n" per token.
let BYTES = 0;
for (let i = 0; i < TOKENS; i++) BYTES += `data: tok${i}\n\n`.length;

function beta9(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliMain, ...args], { env: { ...process.env, ...env, NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** One round in a child process: PER_ROUND streams read to their end; their times in ms. */
async function readRound(target) {
  const args = JSON.stringify({ ...target, warmup: 1, rounds: PER_ROUND, bytes: BYTES, events: TOKENS });
  const child = spawn(process.execPath, [here("./servers/stream-read.mjs"), args], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`stream reader exited with ${code}`)));
  });
  return JSON.parse(line).ms;
}

export async function run() {
  const unavailable = runcUnavailableReason();
  if (unavailable) return { name: "streaming", skipped: unavailable, print() { console.log(`\n## streaming: skipped (${unavailable})`); } };
  // A fixed dir: a run killed before its cleanup is cleaned up by the next one (startWorker reaps the same state dir and name).
  const dir = join(tmpdir(), "beta9-bench-streaming");
  if (existsSync(dir)) for (const entry of readdirSync(dir)) if (entry !== "worker") rmSync(join(dir, entry), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const times = { direct: [], gateway: [] };
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
      runtime: "runc", name: "b9st", subnet: "10.219.232.0/24", workerId: "bench-streaming",
    });
    await worker.connected;
    const app = join(dir, "app.mjs");
    writeFileSync(app, APP);
    const deployed = await beta9(["deploy", `${app}:tokens`, "--json", "-q"], { BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg") });
    if (deployed.code !== 0) throw new Error(`beta9 deploy failed (${deployed.code}): ${deployed.stderr}`);
    const stubId = JSON.parse(deployed.stdout).stubId;
    const target = {
      gateway: { url: `${gateway.url}/endpoint/${NAME}`, headers: { ...gw.auth }, body: "{}" },
    };
    await readRound({ ...target.gateway }); // scales from zero, then warms JIT and pools
    const [container] = await gw.active(stubId);
    const addr = (await gw.api("GET", `/api/v1/container/${container.id}`)).ports["8000"];
    target.direct = {
      url: `http://${addr.host}:${addr.port}/invoke`, body: '{"input":{}}',
      headers: { "content-type": "application/json", authorization: `Bearer ${runnerSecret(workerDir, container.id)}` },
    };
    await readRound(target.direct);
    for (let i = 0; i < ROUNDS; i++) for (const name of ["direct", "gateway"]) times[name].push(...(await readRound(target[name])));
  } finally {
    await gw?.stopAll();
    await worker?.close(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const ms = { direct: median(times.direct), gateway: median(times.gateway) };
  const rate = { direct: TOKENS / (ms.direct / 1000), gateway: TOKENS / (ms.gateway / 1000) };
  const ratio = rate.gateway / rate.direct;
  return {
    name: `streaming: ${fmt(TOKENS)} SSE tokens from an async generator (Image.scratch() endpoint on a runc worker)`,
    tokens: TOKENS, bytes: BYTES, rounds: ROUNDS * PER_ROUND, goal: "tokens/s ratio >= 0.8",
    direct: { ms: ms.direct, tokensPerS: rate.direct }, gateway: { ms: ms.gateway, tokensPerS: rate.gateway }, ratio,
    directAll: times.direct, gatewayAll: times.gateway,
    print() {
      console.log(`\n## ${this.name}`);
      console.log(`  ${ROUNDS}×${PER_ROUND} alternating streams each, medians of the time to read a whole stream (${fmt(BYTES / 1024, 0)} KiB)`);
      console.log(`    floor   straight to the container's /invoke   ${fmt(ms.direct, 2).padStart(7)} ms   ${fmt(rate.direct).padStart(10)} tokens/s`);
      console.log(`    subject POST /endpoint/${NAME}             ${fmt(ms.gateway, 2).padStart(7)} ms   ${fmt(rate.gateway).padStart(10)} tokens/s`);
      console.log(`    ratio ${fmt(ratio, 2)} (goal >= 0.8)`);
    },
  };
}
