/**
 * Pods end to end on real parts: a gateway, two runc workers (one reached directly, one only
 * through its tunnel, as a worker behind NAT), a private `docker-registry` on loopback behind
 * Basic auth holding an image with python3 and a small HTTP server of its own (no runner), pulled
 * with workspace secrets. Deployed with `Pod()` from the SDK and `beta9 pod deploy` from the CLI:
 * method, path, query, headers and body reach the pod and its answer comes back as it sent it;
 * tokens are enforced unless `authorized: false`; a pod scales to zero and a cold call starts it
 * again; a pod whose port never opens fails with POD_NOT_READY and its last log lines.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { once } from "node:events";
import { request } from "undici";
import WebSocket from "ws";
import { ApiError, Client, Image, Pod } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { buildPythonImage, captureHostState, ownedBy, RegistryClient, startRegistry, type TestRegistry } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-pods-e2e-"));
const cache = process.env.BETA9_TEST_CACHE ?? "/var/tmp/beta9-test-cache";
const hostBefore = captureHostState();
const WORKERS = [["podd", "default", "10.219.152.0/24", true], ["podt", "podtun", "10.219.153.0/24", false]] as const;
const USER = "pods";
const PASSWORD = "pod-Pa55word";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pod's server: stdlib only; echoes what it got, streams on /stream, 404 on /missing. */
const SERVER = String.raw`
import base64, hashlib, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
def read_chunked(f):
    out = b""
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            f.readline()
            return out
        out += f.read(size)
        f.readline()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def websocket(self):
        # A WebSocket echo for short messages: text back as "echo TEXT at PATH", a close frame returned as it came.
        accept = base64.b64encode(hashlib.sha1((self.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 15, head[1] & 127
            if n == 126:
                n = int.from_bytes(self.rfile.read(2), "big")
            mask = self.rfile.read(4) if head[1] & 128 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            reply = ("echo %s at %s" % (data.decode(), self.path)).encode() if op == 1 else data
            self.wfile.write(bytes([0x80 | op, len(reply)]) + reply)
            self.wfile.flush()
            if op == 8:
                return
    def answer(self):
        if self.headers.get("upgrade", "").lower() == "websocket":
            return self.websocket()
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = read_chunked(self.rfile)
        else:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(5):
                chunk = ("chunk %d\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        out = json.dumps({
            "method": self.command, "path": self.path, "bodyLength": len(body), "bodySha256": hashlib.sha256(body).hexdigest(),
            "headers": {k.lower(): v for k, v in self.headers.items()}, "greeting": os.environ.get("GREETING"), "cwd": os.getcwd(),
        }).encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("x-pod", "python")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = answer
    def log_message(self, fmt, *args):
        sys.stderr.write("pod: " + (fmt % args) + "\n")
print("serving on %d" % PORT, flush=True)
ThreadingHTTPServer(("0.0.0.0", PORT), H).serve_forever()
`;

interface Echo {
  method: string;
  path: string;
  bodyLength: number;
  bodySha256: string;
  headers: Record<string, string>;
  greeting: string | null;
  cwd: string;
}

function beta9(gateway: RunningGateway, key: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe("pods end to end (registry image + gateway + runc workers + SDK + CLI)", { skip }, () => {
  let gateway: RunningGateway;
  let client: Client;
  let key: string;
  let registry: TestRegistry;
  let ref: string;
  const workers: StartedWorker[] = [];
  const credentials = { username: "POD_REG_USER", password: "POD_REG_PASS" };

  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    key = gateway.bootstrap!.token.key;
    client = new Client({ gateway: gateway.url, token: key });
    for (const [name, pool, subnet, reachable] of WORKERS) {
      const worker = await startWorker({
        gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, name), logger: pino({ level: "silent" }),
        runtime: "runc", name, subnet, workerId: `pods-${name}`, pool, reachable,
        allowPrivateRegistries: true, // the test registry listens on loopback
      });
      workers.push(worker);
      await worker.connected;
    }
    registry = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    ref = `${registry.host}/team/echo-server:v1`;
    mkdirSync(join(cache, "base-images"), { recursive: true });
    const image = await buildPythonImage(dir, "pods", {
      baseCacheDir: join(cache, "base-images"), files: [{ name: "srv/", type: "dir" }, { name: "srv/server.py", content: SERVER }],
      cmd: ["python3", "/srv/server.py"], workdir: "/srv",
    });
    const pusher = new RegistryClient({ allowPrivate: true, auth: { registry: registry.host, credentials: { username: USER, password: PASSWORD, label: "test" } } });
    try {
      await pusher.push(ref, image);
    } finally {
      await pusher.close();
    }
    await client.createSecret(credentials.username, USER);
    await client.createSecret(credentials.password, PASSWORD);
  });

  after(async () => {
    await client?.close();
    for (const w of workers) await w.close(1000);
    await gateway?.close();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const auth = () => ({ authorization: `Bearer ${key}` });
  const image = () => Image.fromRegistry(ref, { credentials });
  const activeOf = async (stubId: string) => (await client.listContainers({ active: true })).filter((c) => c.stubId === stubId);

  let echoStubId = "";
  test("Pod() from the SDK runs the image's own CMD; method, path, query, headers and a streamed body pass through both ways", async () => {
    const pod = Pod({ image: image(), ports: [8000], env: { GREETING: "hello from env" }, cpu: 0.5, memory: "256Mi", keepWarmSeconds: 1 });
    const started = performance.now();
    const deployed = await pod.deploy({ name: "echo", client });
    process.stdout.write(`deploy (image pull, pack, first container ready): ${Math.round(performance.now() - started)} ms\n`);
    echoStubId = deployed.stubId;
    assert.equal(deployed.url, `${gateway.url}/pod/echo/`);
    assert.ok(deployed.containerId, "deploy waited for a ready container");

    const body = randomBytes(3 * 1024 * 1024);
    const res = await request(`${gateway.url}/pod/echo/items/42?q=a%20b&x=1`, {
      method: "PUT", headers: { ...auth(), "content-type": "application/octet-stream", "x-custom": "kept", cookie: "session=secret" }, body,
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["x-pod"], "python", "the pod's own headers come back");
    const echo = (await res.body.json()) as Echo;
    assert.equal(echo.method, "PUT");
    assert.equal(echo.path, "/items/42?q=a%20b&x=1");
    assert.equal(echo.bodyLength, body.length);
    assert.equal(echo.bodySha256, createHash("sha256").update(body).digest("hex"));
    assert.equal(echo.headers["x-custom"], "kept");
    assert.equal(echo.headers.authorization, undefined, "the gateway token never reaches the pod");
    assert.equal(echo.headers.cookie, undefined, "cookies of the API's origin never reach the pod");
    assert.equal(echo.headers["x-forwarded-prefix"], "/pod/echo");
    assert.equal(echo.greeting, "hello from env");
    assert.equal(echo.cwd, "/srv", "the image's WORKDIR");

    const stream = await request(`${gateway.url}/pod/echo/stream`, { headers: auth() });
    assert.equal(stream.statusCode, 200);
    assert.equal(await stream.body.text(), [0, 1, 2, 3, 4].map((i) => `chunk ${i}\n`).join(""));

    const missing = await request(`${gateway.url}/pod/echo/missing`, { headers: auth() });
    assert.equal(missing.statusCode, 404, "the pod's own status, not the gateway's");
    assert.equal(((await missing.body.json()) as Echo).path, "/missing");

    for (const url of [`${gateway.url}/pod/echo/v1/x`, `${gateway.url}/pod/echo/latest/x`, `${gateway.url}/pod/id/${echoStubId}/x`]) {
      const r = await request(url, { method: "POST", headers: auth(), body: "b" });
      assert.equal(r.statusCode, 200, url);
      assert.equal(((await r.body.json()) as Echo).path, "/x", url);
    }
    const bare = await request(`${gateway.url}/pod/echo?z=1`, { headers: auth() });
    assert.equal(bare.statusCode, 308);
    assert.equal(bare.headers.location, "/pod/echo/?z=1");
    await bare.body.dump();
  });

  test("a WebSocket to a pod's URL reaches its server (path, query, token checked); messages and close codes pass", async () => {
    const url = `${gateway.url.replace(/^http/, "ws")}/pod/echo/socket?room=1`;
    const ws = new WebSocket(url, { headers: auth() });
    await once(ws, "open");
    ws.send("hi");
    const [message] = await once(ws, "message");
    assert.equal(String(message), "echo hi at /socket?room=1");
    ws.close(4001, "bye");
    const [code] = await once(ws, "close");
    assert.equal(code, 4001);
    const refused = new WebSocket(url);
    const [, res] = (await once(refused, "unexpected-response")) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 401, "no token, no socket");
    refused.on("error", () => undefined); // terminate() before an upgrade reports "closed before established"
    refused.terminate();
  });

  test("a pod's URL needs a token of its workspace; an authorized pod has no public URL", async () => {
    const none = await request(`${gateway.url}/pod/echo/x`);
    assert.equal(none.statusCode, 401);
    await none.body.dump();
    const { token } = await client.createWorkspace(`other-${randomBytes(3).toString("hex")}`);
    const other = await request(`${gateway.url}/pod/echo/x`, { headers: { authorization: `Bearer ${token.key}` } });
    assert.equal(other.statusCode, 404, "another workspace does not see it");
    await other.body.dump();
    const publicUrl = await request(`${gateway.url}/public/${echoStubId}/x`);
    assert.equal(publicUrl.statusCode, 404);
    await publicUrl.body.dump();
  });

  test("scale to zero after keep-warm, then a cold call starts a container and is answered", async () => {
    const before = (await activeOf(echoStubId)).map((c) => c.id);
    assert.equal(before.length, 1);
    while ((await activeOf(echoStubId)).length > 0) await sleep(100);
    const started = performance.now();
    const res = await request(`${gateway.url}/pod/echo/cold?after=zero`, { method: "POST", headers: auth(), body: "cold" });
    assert.equal(res.statusCode, 200);
    process.stdout.write(`cold call from zero containers (python3 server start included): ${Math.round(performance.now() - started)} ms\n`);
    const echo = (await res.body.json()) as Echo;
    assert.deepEqual([echo.path, echo.bodyLength], ["/cold?after=zero", 4]);
    const now = await activeOf(echoStubId);
    assert.ok(now.length === 1 && !before.includes(now[0]!.id), "a new container served the cold call");
  });

  test("beta9 pod deploy --public with an entrypoint: /public/STUB/ without a token; pod list and deployment list show it", async () => {
    const out = await beta9(gateway, key, [
      "pod", "deploy", "--image", ref, "--port", "9000", "--name", "open", "--public", "--registry-credentials", `${credentials.username}:${credentials.password}`,
      "-e", "GREETING=from the cli", "--json", "--", "python3", "/srv/server.py", "9000",
    ]);
    assert.equal(out.code, 0, out.stderr);
    const d = JSON.parse(out.stdout) as { stubId: string; url: string; publicUrl: string; containerId: string };
    assert.equal(d.url, `${gateway.url}/pod/open/`);
    assert.equal(d.publicUrl, `${gateway.url}/public/${d.stubId}/`);
    const res = await request(`${d.publicUrl}hello?x=1`, { method: "POST", headers: { authorization: "Basic dXNlcjpwYXNz" }, body: "public" });
    assert.equal(res.statusCode, 200);
    const echo = (await res.body.json()) as Echo;
    assert.deepEqual([echo.path, echo.greeting, echo.headers.authorization], ["/hello?x=1", "from the cli", "Basic dXNlcjpwYXNz"], "a public pod does its own auth");
    const leaked = await request(`${d.publicUrl}x`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(((await leaked.body.json()) as Echo).headers.authorization, undefined, "a beta9 token sent to a public pod is not handed over");
    const named = await request(`${gateway.url}/pod/open/x`);
    assert.equal(named.statusCode, 401, "the named URL still needs a token");
    await named.body.dump();

    const list = await beta9(gateway, key, ["pod", "list", "--json"]);
    assert.equal(list.code, 0, list.stderr);
    const pods = JSON.parse(list.stdout) as { name: string; stubType: string; url: string }[];
    assert.deepEqual(pods.map((p) => p.name).sort(), ["echo", "open"]);
    assert.ok(pods.every((p) => p.stubType === "pod/deployment" && p.url.startsWith(`${gateway.url}/pod/${p.name}/v`)));
    const table = await beta9(gateway, key, ["deployment", "list"]);
    assert.match(table.stdout, /open\s+v1\s+pod\/deployment\s+yes/);
  });

  test("through a worker reached only by its tunnel", async () => {
    const deployed = await Pod({ image: image(), ports: [8000], pool: "podtun", memory: "256Mi" }).deploy({ name: "tunnelled", client });
    const [container] = await activeOf(deployed.stubId);
    assert.equal(container?.ports["8000"]?.host, "127.0.0.1", "the gateway reaches this container through the worker's tunnel");
    const body = randomBytes(1024 * 1024);
    const res = await request(`${gateway.url}/pod/tunnelled/t?via=tunnel`, { method: "POST", headers: auth(), body });
    assert.equal(res.statusCode, 200);
    const echo = (await res.body.json()) as Echo;
    assert.deepEqual([echo.path, echo.bodySha256], ["/t?via=tunnel", createHash("sha256").update(body).digest("hex")]);
    const stream = await request(`${gateway.url}/pod/tunnelled/stream`, { headers: auth() });
    assert.equal(await stream.body.text(), [0, 1, 2, 3, 4].map((i) => `chunk ${i}\n`).join(""));
  });

  test("a pod whose port never opens: the CLI deploy fails with POD_NOT_READY after its readyTimeout and shows its last log lines", async () => {
    const out = await beta9(gateway, key, [
      "pod", "deploy", "--image", ref, "--port", "8000", "--name", "silent", "--ready-timeout", "2", "-q",
      "--registry-credentials", `${credentials.username}:${credentials.password}`, "--", "sh", "-c", "echo loading weights; echo no port here >&2; exec sleep 600",
    ]);
    assert.equal(out.code, 1, out.stdout);
    assert.match(out.stderr, /error: POD_NOT_READY: Pod silent: its port 8000 did not open within 2 s \(readyTimeout\)/);
    assert.match(out.stderr, /loading weights/);
    assert.match(out.stderr, /no port here/);
    const stub = (await client.listDeployments({ name: "silent" }))[0]!.stubId;
    while ((await activeOf(stub)).length > 0) await sleep(100); // the container was stopped

    await assert.rejects(
      Pod({ image: image(), ports: [8000], entrypoint: ["sh", "-c", "exit 3"] }).deploy({ name: "crashes", client }),
      (err: unknown) => err instanceof ApiError && err.code === "POD_NOT_READY" && /exited before their port opened/.test(err.message),
    );
  });

  test("deployment stop works on a pod: its version URL answers DEPLOYMENT_STOPPED, its name 404, and its containers stop", async () => {
    const stopped = await beta9(gateway, key, ["deployment", "stop", "open"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    const res = await request(`${gateway.url}/pod/open/v1/x`, { headers: auth() });
    assert.equal(res.statusCode, 409);
    assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, "DEPLOYMENT_STOPPED");
    const latest = await request(`${gateway.url}/pod/open/x`, { headers: auth() });
    assert.equal(latest.statusCode, 404, "no active version is left under the name");
    await latest.body.dump();
    const stub = (await client.listDeployments({ name: "open" }))[0]!.stubId;
    while ((await activeOf(stub)).length > 0) await sleep(100);
  });

  test("nothing is left on the host", async () => {
    for (const w of workers.splice(0)) await w.close(1000);
    const names = WORKERS.map(([name]) => name);
    assert.deepEqual(ownedBy(captureHostState(), names, [dir]), ownedBy(hostBefore, names, [dir]));
  });
});
