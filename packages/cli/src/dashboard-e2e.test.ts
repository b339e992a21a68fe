/**
 * The web dashboard in a real browser (Debian's chromium, driven by puppeteer-core) against real
 * parts: a gateway, a worker and the `beta9` CLI. An endpoint and a task queue are deployed
 * with the CLI and seen on the page; calls move the deployment's chart; a task is cancelled from
 * the page and the API says CANCELLED; a container's log is followed live; a restricted token sees
 * no mutating control; and no URL the page requests holds a token. From the page too: the tasks
 * list filtered by the gateway, a sandbox's exec and terminate, a machine's cordon and drain, and an
 * image's build log. Screenshots of every page go to /tmp/dashboard-shots/. Runs on the runc worker,
 * as every other e2e does; where runc cannot run, on the process worker (said in the output).
 * Skipped (with the reason) without chromium.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Browser, HTTPRequest, Page } from "puppeteer-core";
import { Client, Sandbox, type SandboxInstance } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";

/** Page-side callbacks run in the browser; the CLI package is compiled without the DOM types. */
declare const document: any;

const CHROMIUM = process.env.BETA9_CHROMIUM ?? "/usr/bin/chromium";
/**
 * runc where it can run; else plain processes (this test is about the page, and trusted code runs
 * there with --allow-unisolated). BETA9_DASHBOARD_RUNTIME=runc|process picks one.
 */
const runcProblem = runcUnavailableReason();
const RUNTIME = process.env.BETA9_DASHBOARD_RUNTIME === "runc" || process.env.BETA9_DASHBOARD_RUNTIME === "process" ? process.env.BETA9_DASHBOARD_RUNTIME
  : runcProblem ? "process" : "runc";
const skip = !existsSync(CHROMIUM) ? `no chromium at ${CHROMIUM} (apt-get install chromium)` : RUNTIME === "runc" ? runcProblem : undefined;
const SHOTS = "/tmp/dashboard-shots";
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const sdk = fileURLToPath(new URL("../../sdk/dist/index.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-dash-e2e-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const motd = join(dir, "motd.txt");
// One build step (a file copied in), so the image has a build log for the images page to show.
const APP = `
import { endpoint, taskQueue, Image } from ${JSON.stringify(sdk)};
const small = { image: Image.scratch().addLocalFile(${JSON.stringify(motd)}, "/etc/dash-motd.txt"), cpu: 0.25, memory: "128Mi", keepWarmSeconds: 600 };
export const echo = endpoint({ name: "dash-echo", ...small }, async (input: { n: number }) => {
  console.log("echo " + input.n);
  return { n: input.n };
});
export const jobs = taskQueue({ name: "dash-jobs", ...small }, async (input: { hold?: boolean }, ctx) => {
  if (input.hold) await new Promise((r) => ctx.signal.addEventListener("abort", r));
  return "done";
});
`;

describe("the web dashboard in chromium (gateway + worker + CLI)", { skip }, () => {
  let gateway: RunningGateway;
  let worker: StartedWorker;
  let client: Client;
  let adminKey: string;
  let restrictedKey: string;
  let browser: Browser;
  let page: Page;
  let sandbox: SandboxInstance | undefined;
  /** Every URL the page asked for, to check no token is in one. */
  const requested: string[] = [];
  const pageErrors: string[] = [];

  const call = async (n: number) => {
    const res = await fetch(`${gateway.url}/endpoint/dash-echo`, { method: "POST", headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" }, body: JSON.stringify({ n }) });
    assert.equal(res.status, 200, await res.clone().text());
  };
  const go = async (hash: string, heading: string) => {
    await page.goto(`${gateway.url}/${hash}`, { waitUntil: "domcontentloaded" });
    await page.waitForFunction((h) => document.querySelector("main h1")?.textContent?.startsWith(h), { timeout: 30_000 }, heading);
  };
  const shot = async (name: string) => {
    await sleep(300); // the next poll fills the tables
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const text = () => page.evaluate(() => document.body.innerText);
  /** Runs the CLI against the gateway with the admin token; its exit code and output. */
  const beta9 = async (...args: string[]) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: adminKey, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, stdio: "pipe",
    });
    let out = "";
    child.stdout!.on("data", (d) => (out += String(d)));
    child.stderr!.on("data", (d) => (out += String(d)));
    const code = await new Promise((r) => child.once("exit", r));
    return { code, out };
  };
  const signIn = async (key: string) => {
    await page.goto(`${gateway.url}/`, { waitUntil: "domcontentloaded" });
    await page.waitForSelector("#token");
    await page.type("#token", key);
    await page.click("button[type=submit]");
    await page.waitForSelector("nav[aria-label=Pages]");
  };

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    writeFileSync(motd, "hello from the dashboard test\n");
    console.log(`# dashboard e2e: ${RUNTIME} worker${RUNTIME === "process" && runcProblem ? ` (runc: ${runcProblem})` : ""}`);
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: await freePort(), logLevel: "silent" });
    adminKey = gateway.bootstrap!.token.key;
    client = new Client({ gateway: gateway.url, token: adminKey });
    restrictedKey = (await client.createToken({ type: "restricted", name: "dash-viewer" })).key;
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"), runtime: RUNTIME, allowUnisolated: true, name: "dash", subnet: "10.219.131.0/24",
      workerId: "dash-worker", capacity: { cpuMillicores: 4000, memoryMiB: 4096, gpus: [{ type: "A10G", count: 1 }] }, logger: pino({ level: process.env.BETA9_TEST_WORKER_LOG ? "info" : "silent" }, pino.destination(process.env.BETA9_TEST_WORKER_LOG ?? "/dev/null")),
    });
    await worker.connected;
    const { default: puppeteer } = await import("puppeteer-core");
    browser = await puppeteer.launch({
      executablePath: CHROMIUM, headless: true,
      // --no-sandbox: chromium's sandbox cannot start as root (CI runs as root).
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on("request", (r: HTTPRequest) => requested.push(r.url()));
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));
    page.on("dialog", (d) => void d.accept());
  });

  after(async () => {
    await sandbox?.terminate().catch(() => undefined);
    await browser?.close();
    await client?.close();
    await worker?.close(2000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the page is served with a strict CSP and cache headers, and signs in with a token", async () => {
    const res = await fetch(`${gateway.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-security-policy")!, /default-src 'none'; script-src 'self'/);
    assert.equal(res.headers.get("cache-control"), "no-cache");
    const asset = /src="(\/dashboard\/app-[^"]+\.js)"/.exec(await res.text())![1]!;
    assert.match((await fetch(gateway.url + asset)).headers.get("cache-control")!, /immutable/);
    await signIn(adminKey);
    await go("#/", "Overview");
    await page.waitForFunction(() => document.body.innerText.includes("dash-worker") || document.body.innerText.includes("A10G"), { timeout: 30_000 });
    await shot("overview");
  });

  test("a deployment made with the CLI appears, and calls move its chart", async () => {
    const root = join(dir, "app");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(root, "app.ts"), APP);
    await go("#/deployments", "Deployments");
    for (const target of ["echo", "jobs"]) {
      const { code, out } = await beta9("deploy", `${join(root, "app.ts")}:${target}`, "-q");
      assert.equal(code, 0, out);
    }
    // The list polls: the new deployment shows without a reload.
    await page.waitForSelector('[data-deployment="dash-echo"]', { timeout: 30_000 });
    await shot("deployments");
    await page.click('[data-deployment="dash-echo"]');
    await page.waitForSelector('[data-chart="Calls"]');
    const calls = () => page.$eval('[data-chart="Calls"] [data-summary]', (e) => Number(/calls: last \S+, total (\d+)/.exec(e.textContent ?? "")?.[1] ?? -1));
    assert.equal(await calls(), 0);
    for (const n of [1, 2, 3]) await call(n);
    await until("the calls chart to count 3 calls", async () => ((await calls()) >= 3 ? true : undefined), 30_000);
    await shot("deployment-detail");
  });

  test("a task cancelled from the page is CANCELLED through the API", async () => {
    // One task completes first (the queue's container then holds the other until it is cancelled).
    const done = await client.putTask("dash-jobs", {});
    await until("the first task complete", async () => ((await done.status()).status === "COMPLETE" ? true : undefined), 90_000);
    const held = await client.putTask("dash-jobs", { hold: true });
    await until("the held task running", async () => ((await held.status()).status === "RUNNING" ? true : undefined), 90_000);
    await go("#/tasks", "Tasks");
    await page.select("select[name=workload]", "dash-jobs");
    await page.waitForSelector(`[data-task="${held.id}"]`, { timeout: 30_000 });
    // The gateway filters: the page asks for the deployment's tasks, not for everything (the held
    // task's row may already show from the unfiltered list: wait for the request itself).
    await until("the page to ask the gateway for the deployment's tasks",
      async () => (requested.some((u) => /\/api\/v1\/task\?.*deployment=dash-jobs/.test(u)) ? true : undefined), 30_000);
    await page.select("select[name=status]", "COMPLETE");
    await page.waitForSelector(`[data-task="${done.id}"]`, { timeout: 30_000 });
    await page.waitForFunction((id) => !document.querySelector(`[data-task="${id}"]`), { timeout: 30_000 }, held.id);
    await page.select("select[name=status]", "RUNNING");
    await page.waitForSelector(`[data-task="${held.id}"]`, { timeout: 30_000 });
    assert.match(page.url(), /#\/tasks\?status=RUNNING&deployment=dash-jobs$/, "the filters stay in the address");
    await shot("tasks");
    // The CLI asks the same filters of the gateway.
    const listed = await beta9("task", "list", "--status", "running", "--deployment", "dash-jobs", "--json");
    assert.equal(listed.code, 0, listed.out);
    assert.deepEqual((JSON.parse(listed.out) as { id: string }[]).map((t) => t.id), [held.id]);
    const bad = await beta9("task", "list", "--status", "DONE");
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /status/);
    await go(`#/tasks/${held.id}`, "Task");
    await page.waitForSelector(`button[aria-label="Cancel ${held.id}"]`);
    await page.click(`button[aria-label="Cancel ${held.id}"]`);
    await until("CANCELLED through the API", async () => ((await held.status()).status === "CANCELLED" ? true : undefined), 30_000);
    await page.waitForFunction(() => document.querySelector("h1 .badge")?.textContent === "CANCELLED", { timeout: 30_000 });
    await shot("task-detail");
  });

  test("a container's log is followed live", async () => {
    const container = await until("the endpoint's container", async () =>
      (await client.listContainers({ active: true })).find((c) => c.stubName === "dash-echo" && c.state === "RUNNING"));
    await go(`#/logs?container=${container.id}`, "Logs");
    await page.waitForSelector('[data-log-state="following"]');
    await page.waitForFunction(() => document.querySelector(".logs")?.textContent?.includes("echo 3"), { timeout: 30_000 });
    await call(4242);
    await page.waitForFunction(() => document.querySelector(".logs")?.textContent?.includes("echo 4242"), { timeout: 30_000 });
    await shot("logs");
  });

  test("a sandbox is listed, runs a command from the page, and is terminated from it", async () => {
    sandbox = await new Sandbox({ image: null, client, cpu: "250m", memory: 256 }).create();
    await go("#/sandboxes", "Sandboxes");
    const exec = `button[aria-label="Exec in ${sandbox.id}"]`;
    await page.waitForSelector(exec, { timeout: 60_000 });
    await page.click(exec);
    await page.waitForSelector("form.exec input[name=command]");
    await page.$eval("form.exec input[name=command]", (e) => {
      e.value = "";
    });
    await page.type("form.exec input[name=command]", "echo dash-exec-ok");
    await page.click("form.exec button[type=submit]");
    await page.waitForFunction(() => /dash-exec-ok\s*\[exit 0\]/.test(document.querySelector("form.exec pre")?.textContent ?? ""), { timeout: 30_000 });
    await shot("sandbox-exec");
    await page.click(`button[aria-label="Terminate ${sandbox.id}"]`);
    await until("the sandbox TERMINATED through the API", async () => ((await sandbox!.status()).state === "TERMINATED" ? true : undefined), 30_000);
    await page.waitForFunction((sel) => !document.querySelector(sel), { timeout: 30_000 }, exec);
  });

  test("a machine is cordoned, uncordoned and drained from the page", async () => {
    const made = await beta9("machine", "create", "--pool", "dash-pool");
    assert.equal(made.code, 0, made.out);
    const id = /created machine (\S+)/.exec(made.out)![1]!;
    const machine = async () => (await client.listMachines()).find((m) => m.id === id)!;
    await go("#/machines", "Machines");
    await page.waitForSelector(`button[aria-label="Cordon ${id}"]`, { timeout: 30_000 });
    assert.match(await text(), /dash-pool/, "the pool is listed");
    await page.click(`button[aria-label="Cordon ${id}"]`);
    await until("cordoned through the API", async () => ((await machine()).cordoned ? true : undefined), 30_000);
    await page.waitForSelector(`button[aria-label="Uncordon ${id}"]`, { timeout: 30_000 });
    await page.click(`button[aria-label="Uncordon ${id}"]`);
    await until("uncordoned through the API", async () => (!(await machine()).cordoned ? true : undefined), 30_000);
    await page.waitForSelector(`button[aria-label="Drain ${id}"]`, { timeout: 30_000 });
    await page.click(`button[aria-label="Drain ${id}"]`);
    await until("draining through the API", async () => ((await machine()).draining ? true : undefined), 30_000);
    await page.waitForFunction((sel) => !document.querySelector(sel), { timeout: 30_000 }, `button[aria-label="Drain ${id}"]`);
    await shot("machines-actions");
  });

  test("an image's build log is shown from the images page", async () => {
    const image = await until("the workloads' image, built with one step", async () => (await client.listImages()).find((i) => (i.spec as { steps: unknown[] }).steps.length === 1 && i.status === "ready"));
    await go("#/images", "Images");
    await page.waitForSelector(`a[href="#/images/${image.id}"]`, { timeout: 30_000 });
    await page.click(`a[href="#/images/${image.id}"]`);
    await page.waitForFunction(() => /complete, [1-9]\d* lines/.test(document.querySelector("[role=status]")?.textContent ?? ""), { timeout: 30_000 });
    assert.ok((await page.$eval("pre.logs", (e) => e.textContent ?? "")).length > 0);
    await shot("image-build-log");
  });

  test("every other page renders (screenshots), with no error on the page", async () => {
    for (const [hash, heading, name] of [["#/sandboxes", "Sandboxes", "sandboxes"], ["#/images", "Images", "images"], ["#/access", "Tokens", "access"], ["#/machines", "Machines", "machines"]] as const) {
      await go(hash, heading);
      await page.waitForFunction(() => !document.querySelector("[aria-busy=true]"), { timeout: 30_000 });
      assert.doesNotMatch(await text(), /Could not load/, `${hash}: ${await text()}`);
      if (name === "access") {
        assert.match(await text(), /dash-viewer/); // the restricted token, listed by name (its key never)
        assert.ok(!(await text()).includes(restrictedKey));
      }
      await shot(name);
    }
    await page.setViewport({ width: 390, height: 844 });
    await go("#/deployments", "Deployments");
    await shot("deployments-phone");
    await page.setViewport({ width: 1280, height: 900 });
    assert.deepEqual(pageErrors, []);
  });

  test("a restricted token sees no mutating control on any page", async () => {
    await page.click("button.link"); // sign out
    await signIn(restrictedKey);
    const task = await client.putTask("dash-jobs", {});
    const deployment = (await client.listDeployments()).find((d) => d.name === "dash-echo")!;
    for (const [hash, heading] of [["#/", "Overview"], ["#/deployments", "Deployments"], [`#/deployments/${deployment.id}`, "dash-echo"], ["#/tasks", "Tasks"],
      [`#/tasks/${task.id}`, "Task"], ["#/sandboxes", "Sandboxes"], ["#/images", "Images"], ["#/access", "Tokens"], ["#/machines", "Machines"]] as const) {
      await go(hash, heading);
      await page.waitForFunction(() => !document.querySelector("[aria-busy=true]"), { timeout: 30_000 });
      await sleep(300);
      const mutating = await page.$$eval("[data-mutates], button", (els) => els.map((e) => e.textContent ?? "").filter((t) => t !== "Sign out"));
      assert.deepEqual(mutating, [], `${hash} shows ${mutating.join(", ")} to a restricted token`);
    }
    assert.match(await page.$eval(".who", (e) => e.textContent ?? ""), /restricted \(read-only\)/);
    await shot("restricted-access");
  });

  test("no URL the page requested holds a token", () => {
    assert.ok(requested.length > 20, `only ${requested.length} requests seen`);
    for (const url of requested) {
      assert.ok(!url.includes(adminKey) && !url.includes(restrictedKey), `a token in ${url}`);
      assert.ok(!/[?&](token|key|access_token)=/i.test(url), `a token-like parameter in ${url}`);
    }
  });
});
