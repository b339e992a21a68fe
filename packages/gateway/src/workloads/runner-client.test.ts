/** The runner client's one status→outcome mapping, against a real HTTP server on loopback playing the runner. */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { after, before, test } from "node:test";
import { Pool } from "undici";
import { STREAM_HEADER, TASK_ID_HEADER, TASK_RETRIES_HEADER, WEB_AUTHORIZATION_HEADER } from "@beta9/protocol";
import {
  CallTimedOut, ContainerLost, cancelInvocation, connect, invokeEndpoint, requestWebApp, runTask, runnerReady, upgradeTarget, type RunnerTarget,
} from "./runner-client.js";

const SECRET = "s3cret";
let server: Server;
let origin = "";
let target: RunnerTarget;
/** What the fake runner saw last: path, headers. */
const seen: { path?: string; headers?: IncomingMessage["headers"]; cancelled: string[] } = { cancelled: [] };

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

/** The answer a fake runner gives for an input `{ answer: … }`: one per outcome. */
function answer(input: { answer?: string } | null, res: ServerResponse): void {
  switch (input?.answer) {
    case "ok": return json(res, 200, { result: { n: 1 } });
    case "invalid": return json(res, 422, { error: { code: "INPUT_INVALID", message: "n must be a number" } });
    case "throws": return json(res, 500, { error: { code: "HANDLER_ERROR", message: "boom", stack: "Error: boom\n    at main.js:3" } });
    case "busy": return json(res, 503, { error: { code: "BUSY", message: "all slots taken" } });
    case "text": return void res.writeHead(500).end("not json at all");
    case "stream": return void res.writeHead(200, { [STREAM_HEADER]: "events", "content-type": "text/event-stream" }).end("data: 1\n\n");
    case "hang": return; // never answers: a timeout
    case "drop": return void res.socket?.destroy(); // the container goes away mid-call
    default: return json(res, 200, { result: null });
  }
}

before(async () => {
  server = createServer((req, res) => {
    seen.path = req.url;
    seen.headers = req.headers;
    if (req.url === "/health") return json(res, 200, { status: "ok" });
    if (req.headers.authorization !== `Bearer ${SECRET}`) return json(res, 401, { error: { message: "no secret" } });
    if (req.url?.startsWith("/cancel/")) {
      seen.cancelled.push(decodeURIComponent(req.url.slice("/cancel/".length)));
      return void res.writeHead(204).end();
    }
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      if (req.url?.startsWith("/web/")) return json(res, 502, { error: { code: "WEBAPP_BAD_RESPONSE", message: "the app returned a string" } });
      if (req.url === "/invoke-batch") return void res.writeHead(404).end(); // an older runner: one /invoke per task
      answer((JSON.parse(body) as { input: { answer?: string } | null }).input, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  target = { origin, runner: connect(origin, 4, SECRET), authorization: `Bearer ${SECRET}` };
});
after(async () => {
  await target.runner.close();
  server.closeAllConnections();
  server.close();
});

const call = (answer: string, timeoutMs = 5000) => invokeEndpoint(target, { input: { answer }, taskId: "t-1", timeoutMs });

test("endpoint calls: each runner answer maps to its outcome", async () => {
  const table: [string, unknown][] = [
    ["ok", { kind: "ok", result: '{"n":1}' }],
    ["invalid", { kind: "inputInvalid", message: "n must be a number" }],
    ["throws", { kind: "handlerError", status: 500, code: "HANDLER_ERROR", message: "boom", stack: "Error: boom\n    at main.js:3" }],
    ["busy", { kind: "handlerError", status: 503, code: "BUSY", message: "all slots taken" }],
    ["text", { kind: "handlerError", status: 500, message: "not json at all" }],
  ];
  for (const [input, expected] of table) assert.deepEqual(await call(input), expected, input);
  assert.equal(seen.headers?.[TASK_ID_HEADER], "t-1");
  assert.equal(seen.headers?.authorization, `Bearer ${SECRET}`, "every call carries the container's secret");
});

test("a streamed answer is handed back to relay, a silent runner is timedOut, a dropped one lost", async () => {
  const streamed = await call("stream");
  assert.equal(streamed.kind, "stream");
  if (streamed.kind === "stream") assert.equal(await streamed.res.body.text(), "data: 1\n\n");
  assert.deepEqual(await call("hang", 100), { kind: "timedOut" });
  const dropped = await call("drop");
  assert.equal(dropped.kind, "lost");
});

test("a web app's answer that is not a stream is a failure, whatever its status", async () => {
  const outcome = await requestWebApp(target, { path: "/x?q=1", method: "GET", headers: {}, body: null, taskId: "t-2", timeoutMs: 5000, appAuthorization: "Basic dTpw" });
  assert.deepEqual(outcome, { kind: "handlerError", status: 502, code: "WEBAPP_BAD_RESPONSE", message: "the app returned a string" });
  assert.equal(seen.path, "/web/x?q=1");
  assert.deepEqual([seen.headers?.authorization, seen.headers?.[WEB_AUTHORIZATION_HEADER]], [`Bearer ${SECRET}`, "Basic dTpw"]);
});

test("task attempts: the same mapping, and the abort reason says timedOut, lost or cancelled", async () => {
  const run = (answer: string, signal = new AbortController().signal) => runTask(target.runner, { id: "task-1", inputJson: JSON.stringify({ answer }), retries: 2 }, signal);
  assert.deepEqual(await run("ok"), { kind: "ok", result: { n: 1 } });
  assert.equal(seen.headers?.[TASK_RETRIES_HEADER], "2");
  assert.deepEqual(await run("invalid"), { kind: "inputInvalid", message: "n must be a number" });
  assert.equal((await run("throws")).kind, "handlerError");
  assert.deepEqual(await run(""), { kind: "ok", result: null });
  const reasons: [unknown, unknown][] = [
    [new CallTimedOut(), { kind: "timedOut" }],
    [new ContainerLost("c-1", "worker lost"), { kind: "lost", reason: "worker lost", exited: true }],
    [undefined, { kind: "cancelled" }],
  ];
  for (const [reason, expected] of reasons) {
    const abort = new AbortController();
    const pending = run("hang", abort.signal);
    setImmediate(() => abort.abort(reason));
    assert.deepEqual(await pending, expected);
  }
});

test("cancel, health and the WebSocket upgrade target speak the same protocol", async () => {
  await cancelInvocation(target.runner, "task/1");
  assert.deepEqual(seen.cancelled, ["task/1"]);
  assert.equal(await runnerReady(origin), true);
  assert.equal(await runnerReady("http://127.0.0.1:1"), false);
  const upgrade = upgradeTarget(target, "realtime", "/room?x=1", { "x-forwarded-prefix": "/endpoint/chat" }, "t-3");
  assert.deepEqual(upgrade, {
    host: "127.0.0.1", port: Number(new URL(origin).port), path: "/realtime/room?x=1",
    headers: { "x-forwarded-prefix": "/endpoint/chat", authorization: `Bearer ${SECRET}`, [TASK_ID_HEADER]: "t-3" },
  });
  // A public app's caller's own Authorization travels under the protocol's header; the runner's is the secret.
  const app = upgradeTarget(target, "web", "/ws", {}, "t-4", "Basic dTpw");
  assert.deepEqual([app.path, app.headers.authorization, app.headers[WEB_AUTHORIZATION_HEADER]], ["/web/ws", `Bearer ${SECRET}`, "Basic dTpw"]);
  // A connection without the secret (another container) is refused by the runner.
  const bare = new Pool(origin);
  const res = await bare.request({ path: "/invoke", method: "POST", body: "{}" });
  assert.equal(res.statusCode, 401);
  await res.body.dump();
  await bare.close();
});
