/**
 * Upgrades the gateway does not take are answered and closed, whatever their path: dot segments
 * (plain or percent-encoded) are refused before any handler reads the path, and a worker connect
 * through such a path is handled once (refused), never by both the API and the worker protocol.
 * Open sockets are counted from the kernel's table (sockets held by a descriptor on the
 * gateway's port), so a socket ended but never closed counts as open.
 */
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startGateway, type RunningGateway } from "../server.js";
import { callApi } from "../testing/wait.js";
import { normalUpgradePath } from "../upgrades.js";

let gw: RunningGateway;
let admin: string;
const dir = mkdtempSync(join(tmpdir(), "beta9-upaths-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
before(async () => {
  gw = await startGateway({ dataDir: dir, port: 0, logLevel: "silent" });
  admin = gw.bootstrap!.token.key;
});
after(async () => {
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Gateway-side sockets on its port still held by a descriptor (listening socket excluded). */
function gatewaySockets(): number {
  let n = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const localPort = parseInt(f[1]!.split(":")[1]!, 16);
      if (localPort === gw.port && f[3] !== "0A" && f[9] !== "0") n += 1;
    }
  }
  return n;
}

interface Answer {
  socket: Socket;
  data: () => string;
  answered: Promise<void>;
}

/** A raw upgrade request from a client that never ends its side and never closes. */
function upgrade(path: string, headers: Record<string, string> = {}): Answer {
  const socket = connect({ host: "127.0.0.1", port: gw.port, allowHalfOpen: true });
  let got = "";
  socket.on("error", () => undefined);
  const answered = new Promise<void>((resolve) => {
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (got.includes("\r\n\r\n")) resolve();
    });
  });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n${extra}\r\n`);
  return { socket, data: () => got, answered };
}

async function until(probe: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(25);
  }
}

test("normal form: dot segments, encoded or not, and backslashes are not; everything else is kept as it is", () => {
  assert.equal(normalUpgradePath("/api/v1/worker/connect?x=1"), "/api/v1/worker/connect");
  assert.equal(normalUpgradePath("/endpoint/a%20b/x"), "/endpoint/a%20b/x");
  for (const bad of ["/api/v1/worker/tunnel/%2e%2e/%2e%2e/x", "/api/v1/worker/x/../connect", "/a/./b", "/a/%2E%2e/b", "/a/%2e/b", "//../x", "*", "http://h/x"]) {
    assert.equal(normalUpgradePath(bad), undefined, bad);
  }
});

test("upgrades on dot-segment paths (plain or encoded) and unknown paths are answered and their sockets closed by the gateway", async () => {
  const baseline = gatewaySockets();
  const paths = [
    "/api/v1/worker/tunnel/%2e%2e/%2e%2e/x", "/api/v1/worker/tunnel/%2E%2E/%2e%2e/x", "/api/v1/worker/tunnel/../../x",
    "/api/v1/worker/tunnel/./x/..", "/sandbox/x/%2e%2e/%2e%2e/api/v1/health", "/nowhere",
    "/api/v1/worker/tunnel/not-a-stream",
  ];
  const opened: { path: string; a: Answer }[] = [];
  for (let i = 0; i < 5; i++) for (const path of paths) opened.push({ path, a: upgrade(path) });
  await Promise.all(opened.map(({ a }) => a.answered));
  for (const { path, a } of opened) {
    const status = /^HTTP\/1\.1 (\d{3})/.exec(a.data())?.[1];
    const expected = /\.|%2e/i.test(path) ? "400" : path === "/nowhere" ? "404" : "401";
    assert.equal(status, expected, `${path}: ${a.data().slice(0, 80)}`);
  }
  // The clients keep their side open; the gateway still lets go of every socket.
  await until(() => gatewaySockets() <= baseline, 5_000, `gateway sockets back to ${baseline} (now ${gatewaySockets()})`);
  for (const { a } of opened) a.socket.destroy();
});

test("a worker connect through a dot-segment path is handled once: refused, never upgraded", async () => {
  const key = (await callApi(gw.url, admin, "POST", "/api/v1/token", { type: "worker" })).json.key as string;
  for (const path of ["/api/v1/worker/x/../connect", "/api/v1/worker/x/%2e%2e/connect", "/api/v1/%2e/worker/connect"]) {
    const a = upgrade(path, { authorization: `Bearer ${key}` });
    await a.answered;
    await sleep(200); // anything a second handler would write comes now
    const data = a.data();
    assert.match(data, /^HTTP\/1\.1 400 /, path);
    assert.equal(data.split("HTTP/1.1 ").length - 1, 1, `${path}: one answer only, got ${JSON.stringify(data.slice(0, 300))}`);
    assert.ok(!data.includes(" 101 "), path);
    a.socket.destroy();
  }
  assert.deepEqual((await callApi(gw.url, admin, "GET", "/api/v1/worker")).json.items, []);
});
