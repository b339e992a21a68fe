import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import type { Task } from "@beta9/protocol";
import { sendCallback } from "./callback.js";
import { isPrivateAddress } from "@beta9/protocol";

const task: Task = {
  id: "t1", workspaceId: "w", stubId: "s", status: "COMPLETE", retries: 0, maxRetries: 0, containerId: null, error: null,
  result: { label: "cat" }, createdAt: new Date().toISOString(), startedAt: null, endedAt: null, expiresAt: null, nextAttemptAt: null,
};

test("a callback carries the task and a signature the receiver can check with the workspace key; failures are retried", async () => {
  const received: { headers: IncomingMessage["headers"]; body: string }[] = [];
  let failFirst = true;
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.statusCode = failFirst ? 503 : 200;
      failFirst = false;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    assert.equal(await sendCallback(url, "secret-key", task, undefined, true), true, "the operator allowed private targets");
    assert.equal(received.length, 2, "the 503 was retried");
    const { headers, body } = received[1]!;
    assert.deepEqual(JSON.parse(body), { task_id: "t1", status: "COMPLETE", data: { label: "cat" }, error: null });
    assert.equal(headers["x-task-id"], "t1");
    assert.equal(headers["x-task-status"], "COMPLETE");
    const expected = createHmac("sha256", "secret-key").update(`${Buffer.from(body).toString("base64")}:${headers["x-task-timestamp"]}`).digest("hex");
    assert.equal(headers["x-task-signature"], expected);
  } finally {
    server.close();
  }
});

test("callbacks never reach loopback, link-local or private addresses unless the operator allows them", async () => {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits += 1;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as AddressInfo).port;
    for (const host of ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"]) {
      assert.equal(await sendCallback(`http://${host}:${port}/hook`, "k", task, undefined, false), false, host);
    }
    assert.equal(hits, 0, "nothing was sent");
  } finally {
    server.close();
  }
  for (const a of ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "::7f00:1", "64:ff9b:1::a00:1", "2002:a9fe:a9fe::1", "2001:0:4136:e378::1", "100::1", "168.63.129.16", "not-an-ip"]) {
    assert.equal(isPrivateAddress(a), true, a);
  }
  for (const a of ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]) assert.equal(isPrivateAddress(a), false, a);
});
