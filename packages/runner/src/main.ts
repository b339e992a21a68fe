/**
 * The runner: PID 1's child in every workload container, started by the worker with the Node
 * runtime it mounts at /beta9. It listens on $PORT at once (GET /health answers 503 while the
 * workload loads), imports BETA9_CODE_DIR/<file>, runs the workload's onStart, then serves
 * POST /invoke and POST /cancel/:taskId (see @beta9/protocol runner-protocol.ts).
 *
 * Without BETA9_HANDLER it only serves GET /health (used by containers that run no workload).
 * It imports nothing outside Node itself, so it runs on any base image.
 */
import { once } from "node:events";
import type { Server } from "node:net";
import { RUNNER_SECRET_ENV } from "./constants.js";
import { readRunnerEnv, RunnerEnvError, type RunnerEnv } from "./env.js";
import { Invoker } from "./invoker.js";
import { loadWorkload, LoadError, runOnStart } from "./load.js";
import { createRunnerServer, type RunnerState } from "./server.js";
import { tagTaskOutput } from "./task-log.js";

/** How long a stopping runner waits for open connections to finish sending their answers. */
const FLUSH_MS = 1_000;

function fail(message: string): never {
  process.stderr.write(`runner: ${message}\n`);
  process.exit(1);
}

async function listen(server: Server, port: number): Promise<void> {
  server.listen(port, "0.0.0.0");
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err))]);
}

/** Loads the workload and runs onStart; exits 1 with a clear message when either fails. */
async function start(env: RunnerEnv, state: RunnerState): Promise<void> {
  const ref = env.handler;
  if (!ref) return;
  const where = `${ref.file}:${ref.exportName}`;
  try {
    const workload = await loadWorkload(env.codeDir, ref);
    const onStartValue = await runOnStart(workload, where);
    if (state.phase === "stopping") return;
    state.invoker = new Invoker(workload, { concurrency: env.concurrency, containerId: env.containerId, onStartValue });
    state.phase = "ready";
    process.stdout.write(`runner ready: ${where} (${workload.kind} ${workload.name})\n`);
  } catch (err) {
    if (err instanceof LoadError) fail(err.message);
    throw err;
  }
}

/**
 * Lets the answers of the invocations that just finished reach their callers before the process
 * exits: stop accepting, close idle keep-alive sockets, and wait (bounded) for the rest to end.
 */
async function flushResponses(server: Server): Promise<void> {
  await Promise.race([
    new Promise<void>((resolve) => server.close(() => resolve())),
    new Promise<void>((resolve) => setTimeout(resolve, FLUSH_MS).unref()),
  ]);
}

/** SIGTERM/SIGINT: refuse new work, wait up to the grace period for in-flight work, exit 0. */
function handleSignals(env: RunnerEnv, state: RunnerState, server: Server): void {
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      state.invoker?.abortAll(new DOMException(`the runner got ${signal} twice`, "AbortError"));
      process.exit(0);
    }
    stopping = true;
    state.phase = "stopping";
    const invoker = state.invoker;
    if (invoker && !(await invoker.waitIdle(env.graceMs))) {
      process.stderr.write(`runner: ${invoker.inFlight} invocation(s) still running after ${env.graceMs} ms; aborting them\n`);
      invoker.abortAll(new DOMException("the container is stopping", "AbortError"));
    }
    await flushResponses(server);
    process.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void stop(signal));
}

async function main(): Promise<void> {
  // Lines a task prints carry its id to the worker (task-log.ts).
  tagTaskOutput(process.stdout);
  tagTaskOutput(process.stderr);
  let env: RunnerEnv;
  try {
    env = readRunnerEnv();
  } catch (err) {
    if (err instanceof RunnerEnvError) fail(err.message);
    throw err;
  }
  const state: RunnerState = {
    phase: env.handler ? "starting" : "ready",
    invoker: undefined,
    containerId: env.containerId,
    startedAt: Date.now(),
    concurrency: env.concurrency,
    ...(process.env[RUNNER_SECRET_ENV] ? { secret: process.env[RUNNER_SECRET_ENV] } : {}),
  };
  // User code may leave a promise rejection unhandled; log it rather than lose the container.
  process.on("unhandledRejection", (reason) => {
    process.stderr.write(`runner: unhandled promise rejection in user code: ${(reason as Error)?.stack ?? String(reason)}\n`);
  });
  const server = createRunnerServer(state);
  handleSignals(env, state, server);
  try {
    await listen(server, env.port);
  } catch (err) {
    fail(`cannot listen on 0.0.0.0:${env.port}: ${(err as Error).message}`);
  }
  if (!env.handler) process.stdout.write(`runner listening on ${env.port}\n`);
  await start(env, state);
}

main().catch((err: unknown) => fail(`unexpected error: ${(err as Error)?.stack ?? String(err)}`));
