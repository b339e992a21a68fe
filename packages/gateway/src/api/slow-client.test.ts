/** A client that trickles its request (slow-loris) gets 408 REQUEST_TIMEOUT and its socket closed, over a real socket. */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { createTestGateway } from "../testing/harness.js";

test("a request body still arriving after the request timeout is answered 408 REQUEST_TIMEOUT and the socket closed", async (t) => {
  const gw = await createTestGateway({ requestTimeoutMs: 300, connectionsCheckingIntervalMs: 100 });
  t.after(() => gw.close());
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = gw.app.server.address() as { port: number };
  const socket = connect(port, "127.0.0.1");
  let answer = "";
  socket.on("data", (d: Buffer) => (answer += d.toString()));
  await new Promise((r) => socket.once("connect", r));
  socket.write(`POST /api/v1/stub HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${gw.adminKey}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"na`);
  const trickle = setInterval(() => socket.writable && socket.write(" "), 50); // never finishes the body
  await new Promise((r) => socket.once("close", r));
  clearInterval(trickle);
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.equal(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error.code, "REQUEST_TIMEOUT");
});
