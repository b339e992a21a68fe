/**
 * The volume control socket against partial requests: a container that opens many connections and
 * never finishes its headers holds at most CONTROL_MAX_CONNECTIONS of the worker's descriptors, and
 * those only for the headers timeout; a whole request is answered afterwards.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { CONTROL_HEADERS_TIMEOUT_MS, CONTROL_MAX_CONNECTIONS, closeControl, listenControl } from "./control.js";

const dir = mkdtempSync("/tmp/b9ctl-");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
after(() => rmSync(dir, { recursive: true, force: true }));

test("partial-header connections to the control socket are capped and cut after the headers timeout; a whole request is answered", async () => {
  const socketDir = join(dir, "c1");
  const server = await listenControl(socketDir, {
    commit: async (name) => ({ name, version: 1 }),
    reload: async (name) => ({ name }),
    reloaded: async (name, version) => ({ name, version }),
  });
  const path = join(socketDir, "worker.sock");
  const held: { socket: Socket; closedAt: number | undefined }[] = [];
  const started = Date.now();
  try {
    for (let i = 0; i < 40; i++) {
      const socket = connect(path);
      const entry = { socket, closedAt: undefined as number | undefined };
      socket.on("error", () => undefined);
      socket.on("close", () => (entry.closedAt = Date.now()));
      socket.write("POST /volume/commit HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"); // and never the rest
      held.push(entry);
      await sleep(5);
    }
    await sleep(500);
    const open = () => held.filter((h) => h.closedAt === undefined).length;
    assert.ok(open() <= CONTROL_MAX_CONNECTIONS, `at most ${CONTROL_MAX_CONNECTIONS} connections held, ${open()} open`);
    const deadline = started + CONTROL_HEADERS_TIMEOUT_MS + 4_000;
    while (open() > 0 && Date.now() < deadline) await sleep(100);
    assert.equal(open(), 0, "the held connections were cut after the headers timeout");
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const body = JSON.stringify({ name: "data" });
      const req = request({ socketPath: path, method: "POST", path: "/volume/commit", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        let text = "";
        res.on("data", (d) => (text += String(d)));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.deepEqual([answer.status, JSON.parse(answer.body)], [200, { name: "data", version: 1 }]);
  } finally {
    for (const h of held) h.socket.destroy();
    await closeControl(server, socketDir);
  }
});
