#!/usr/bin/env node
// Figures for the web dashboard (not part of `npm run bench`: it needs chromium): the bundle's
// raw and gzipped size, first contentful paint of the sign-in page and of the signed-in overview in
// headless chromium, and the gateway's RSS (a process of its own) idle, with the dashboard open on
// a container's live log, and with 100 more follows spread over 4 containers that each print a
// line every LOG_EVERY_MS (2 ms): the lines the followers receive are counted, so the figure is
// taken with logs flowing, not with idle streams. Containers run on runc where it can run.
// Log ingestion through the gateway vs the worker's own rate is bench/logs.bench.mjs:
//   BENCH_LOG_LINES=300000 node -e 'import("./bench/logs.bench.mjs").then(async (m) => (await m.run()).print())'
//   node bench/dashboard-figures.mjs   (after npm run build; CHROMIUM=/path overrides /usr/bin/chromium)
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import puppeteer from "puppeteer-core";
import { pino } from "pino";
import { runcUnavailableReason, startWorker } from "@beta9/worker";
import { spawnServer } from "./lib.mjs";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "packages", "dashboard", "dist");
let raw = 0;
let gz = 0;
for (const f of readdirSync(dist)) {
  if (f === "types") continue; // tsc's type check output, not served
  const body = readFileSync(join(dist, f));
  raw += body.length;
  gz += gzipSync(body, { level: 9 }).length;
}
console.log(`bundle: ${raw} B raw, ${gz} B gzip (${readdirSync(dist).filter((f) => f !== "types").join(", ")})`);

const dir = mkdtempSync(join(tmpdir(), "beta9-dash-fig-"));
// The gateway in a process of its own, so its RSS is its own: bench/servers/gateway.mjs, a script
// file (a gateway started with `node --input-type=module -e` hands that flag to its log writer's
// worker thread, which then cannot load, and every log line is dropped).
const { child, info } = await spawnServer(join(root, "bench", "servers", "gateway.mjs"), [join(dir, "gw")]);
const { url, adminKey: key } = info;
// Whatever happens below, the gateway process goes with this one.
process.on("exit", () => child.kill("SIGKILL"));
const rss = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]) / 1024);
const apiAs = (token) => async (method, path, body) => (await fetch(url + path, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, ...(body && { body: JSON.stringify(body) }) })).json();
const api = apiAs(key);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const workerKey = (await api("POST", "/api/v1/token", { type: "worker" })).key;
const runtime = runcUnavailableReason() ? "process" : "runc";
const worker = await startWorker({
  gatewayUrl: url, token: workerKey, stateDir: join(dir, "w"), runtime, allowUnisolated: true, workerId: "fig", name: "fig", subnet: "10.219.73.0/24",
  capacity: { cpuMillicores: 4000, memoryMiB: 4096, gpus: [] }, logger: pino({ level: "silent" }),
});
await worker.connected;
await sleep(1000);
const idle = rss();

// Whatever fails below, the containers, the worker (which unmounts and removes what it made), the
// browser and the gateway go, and the data dir with them.
let browser;
const containers = [];
try {
  browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  const page = await browser.newPage();
  const fcp = () => page.evaluate(() => new Promise((resolve) => new PerformanceObserver((list, obs) => {
    const e = list.getEntries().find((x) => x.name === "first-contentful-paint");
    if (e) { obs.disconnect(); resolve(Math.round(e.startTime)); }
  }).observe({ type: "paint", buffered: true })));
  await page.goto(`${url}/`, { waitUntil: "load" });
  const fcpSignIn = await fcp();
  await page.evaluate((k) => sessionStorage.setItem("beta9.token", k), key);
  await page.goto("about:blank"); // a fresh document: a hash change alone would not paint again
  await page.goto(`${url}/#/`, { waitUntil: "load" });
  await page.waitForSelector("main h1");
  const fcpOverview = await fcp();
  console.log(`first contentful paint: sign-in ${fcpSignIn} ms, overview (signed in) ${fcpOverview} ms`);

  // Containers on the host's rootfs printing a numbered line every LOG_EVERY_MS, with this node.
  const EVERY = Number(process.env.LOG_EVERY_MS ?? 2);
  const printer = `let i = 0; setInterval(() => console.log("line " + ++i + " ${"x".repeat(60)}"), ${EVERY});`;
  // The gateway allows 64 follows per workspace (MAX_FOLLOWS_PER_WORKSPACE): two workspaces, two
  // printing containers and 50 follows each (the page's follow is the 51st in the first).
  const other = await api("POST", "/api/v1/workspace", { name: "fig-other" });
  const otherKey = other.token?.key;
  if (!otherKey) throw new Error(`no second workspace: ${JSON.stringify(other)}`);
  for (let n = 0; n < 4; n++) {
    const token = n < 2 ? key : otherKey;
    const c = await apiAs(token)("POST", "/api/v1/container", { command: [process.execPath, "-e", printer], cpu: 0.25, memory: "128Mi" });
    if (!c.id) throw new Error(`no container: ${JSON.stringify(c)}`);
    containers.push({ id: c.id, token });
  }
  for (const { id, token } of containers) {
    for (let i = 0; (await apiAs(token)("GET", `/api/v1/container/${id}`)).state !== "RUNNING"; i++) {
      if (i > 600) throw new Error(`container ${id} did not start`);
      await sleep(100);
    }
  }
  await sleep(2000);
  const sample = await api("GET", `/api/v1/logs?containerId=${containers[0].id}&limit=3`);
  const state = await api("GET", `/api/v1/container/${containers[0].id}`);
  if (!sample.items?.length) throw new Error(`the printer logs nothing: ${JSON.stringify(state)} ${JSON.stringify(sample)}`);
  await page.goto(`${url}/#/logs?container=${containers[0].id}`, { waitUntil: "load" });
  await sleep(5000);
  console.log(`${runtime} worker; the page shows ${await page.$eval(".logs", (e) => e.childElementCount)} lines of the container's log`);
  const withPage = rss();
  const ac = new AbortController();
  let received = 0;
  let lines = 0;
  let refused = 0;
  const streams = Array.from({ length: 100 }, async (_, n) => {
    const { id, token } = containers[n % containers.length];
    const res = await fetch(`${url}/api/v1/logs?containerId=${id}&follow=true`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    if (res.status !== 200) {
      refused++;
      return;
    }
    // Server-sent events, one `log` event per line: count the events.
    let carry = "";
    for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
      received += chunk.length;
      const text = carry + chunk;
      const cut = text.lastIndexOf("\n");
      lines += (text.slice(0, cut + 1).match(/^event: log$/gm) ?? []).length;
      carry = text.slice(cut + 1);
    }
  });
  await sleep(5000);
  const peak = [];
  // What the containers print meanwhile: their newest stored line numbers, before and after.
  const printed = async () => {
    let sum = 0;
    for (const { id, token } of containers) sum += Number(/^line (\d+)/.exec((await apiAs(token)("GET", `/api/v1/logs?containerId=${id}&limit=1`)).items[0]?.line ?? "")?.[1] ?? 0);
    return sum;
  };
  const [linesAt, printedAt, at] = [lines, await printed(), performance.now()];
  for (let i = 0; i < 10; i++) { peak.push(rss()); await sleep(1000); }
  const seconds = (performance.now() - at) / 1000;
  const delivered = (lines - linesAt) / seconds;
  const produced = ((await printed()) - printedAt) / seconds;
  console.log(`gateway RSS: ${idle} MiB idle with a worker, ${withPage} MiB with the dashboard following a log, ${Math.max(...peak)} MiB (median ${[...peak].sort((a, b) => a - b)[5]}) with 100 more follows`);
  console.log(`  while 4 containers print (a line every ${EVERY} ms asked, 0.25 CPU each): ${Math.round(produced)} lines/s printed and stored, ${Math.round(delivered)} stream lines/s delivered to the 100 followers (${Math.round(delivered / 100)} per stream; ${(delivered / (produced * 25)).toFixed(2)} of what they print), ${(received / 1048576).toFixed(1)} MiB in all${refused ? `; ${refused} follows REFUSED` : ""}`);
  ac.abort();
  await Promise.allSettled(streams);
} finally {
  for (const { id, token } of containers) await apiAs(token)("POST", `/api/v1/container/${id}/stop`).catch(() => undefined);
  await browser?.close();
  await worker.close(1000);
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}
