/**
 * fetchToFile against raw loopback servers (plain and TLS with a pinned self-signed certificate)
 * that can answer anything: whole bodies land in the file whatever the read sizes; error answers,
 * answers without a length, lengths other than expected, bodies longer or shorter than announced
 * and a silent server are refused with what went wrong.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { run } from "./exec.js";
import { downloadVerified, FetchError, fetchToFile } from "./fetch-file.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-fetch-file-"));
const body = randomBytes(5 * 1024 * 1024 + 777);
const servers: Server[] = [];
/** What the next request is answered with: raw bytes written to the socket, then (unless `hold`) the end. */
let answer: { head: string; body?: Buffer; hold?: boolean; splitAt?: number } = { head: "" };
let lastRequest = "";

function serve(socket: Socket): void {
  let got = "";
  socket.on("data", (d: Buffer) => {
    got += d.toString("latin1");
    if (!got.includes("\r\n\r\n")) return;
    lastRequest = got;
    const { head, body, hold, splitAt } = answer;
    const rest = () => {
      socket.write(head.slice(splitAt ?? 0));
      if (body) socket.write(body);
      if (!hold) socket.end();
    };
    if (splitAt === undefined) return rest();
    socket.write(head.slice(0, splitAt)); // the rest in a later read
    setTimeout(rest, 30);
  });
  socket.on("error", () => {});
}

let plain: string;
let tls: { url: string; ca: string };

before(async () => {
  const listen = async (server: Server) => {
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return (server.address() as { port: number }).port;
  };
  plain = `http://127.0.0.1:${await listen(createServer(serve))}`;
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=beta9-test", "-days", "1",
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
  const ca = readFileSync(join(dir, "cert.pem"), "utf8");
  const port = await listen(createTlsServer({ key: readFileSync(join(dir, "key.pem")), cert: ca }, serve));
  tls = { url: `https://127.0.0.1:${port}`, ca };
});
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const ok = (b: Buffer, extra = "") => ({ head: `HTTP/1.1 200 OK\r\ncontent-length: ${b.length}\r\nx-beta9-sha256: abc\r\n${extra}\r\n`, body: b });

async function fetchInto(url: string, options: Parameters<typeof fetchToFile>[3] = {}, ca?: string) {
  const path = join(dir, `out-${randomBytes(4).toString("hex")}`);
  const fd = openSync(path, "w");
  try {
    const result = await fetchToFile({ url, token: "secret-token", ...(ca && { tlsCa: ca }) }, `${url}/api/v1/x?y=1`, fd, options);
    return { ...result, bytes: result.bytes, content: readFileSync(path) };
  } finally {
    closeSync(fd);
  }
}

for (const kind of ["plain", "tls"] as const) {
  test(`${kind}: a whole body lands in the file; the headers, the token and the path are as sent`, async () => {
    answer = ok(body);
    const pieces: number[] = [];
    const written: number[] = [];
    const url = kind === "plain" ? plain : tls.url;
    const got = await fetchInto(url, { size: body.length, onPiece: (p) => pieces.push(p.length), onWritten: (w) => written.push(w) }, kind === "tls" ? tls.ca : undefined);
    assert.equal(got.bytes, body.length);
    assert.ok(got.content.equals(body));
    assert.equal(got.headers["x-beta9-sha256"], "abc");
    assert.equal(pieces.reduce((a, b) => a + b, 0), body.length);
    assert.equal(written.at(-1), body.length);
    assert.match(lastRequest, /^GET \/api\/v1\/x\?y=1 HTTP\/1\.1\r\n/);
    assert.match(lastRequest, /\r\nAuthorization: Bearer secret-token\r\n/);
  });
}

test("an empty body and a 100 Continue before the answer; headers split across reads at any point", async () => {
  answer = { head: "HTTP/1.1 100 Continue\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" };
  assert.equal((await fetchInto(plain)).bytes, 0);
  const small = body.subarray(0, 1000);
  const head = `HTTP/1.1 200 OK\r\ncontent-length: ${small.length}\r\nx-beta9-sha256: abc\r\n\r\n`;
  for (const splitAt of [1, 10, head.indexOf("\r\n\r\n") + 1, head.indexOf("\r\n\r\n") + 2, head.indexOf("\r\n\r\n") + 3, head.length - 1]) {
    answer = { head, body: small, splitAt };
    const got = await fetchInto(plain);
    assert.ok(got.content.equals(small), `split at ${splitAt}`);
    assert.equal(got.headers["x-beta9-sha256"], "abc");
  }
});

test("an error answer rejects with its status and body, and writes nothing", async () => {
  const text = JSON.stringify({ error: { code: "RESOURCE_NOT_FOUND", message: "no such content" } });
  answer = { head: `HTTP/1.1 404 Not Found\r\ncontent-length: ${text.length}\r\n\r\n`, body: Buffer.from(text) };
  const err = await fetchInto(plain).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof FetchError);
  assert.equal(err.status, 404);
  assert.equal(err.body, text);
  answer = { head: "HTTP/1.1 503 Unavailable\r\n\r\n", body: Buffer.from("busy") }; // no length: up to the close
  await assert.rejects(fetchInto(plain), (e: FetchError) => e.status === 503 && e.body === "busy");
});

test("refused: no length, chunked, another length than expected, more or fewer bytes than announced", async () => {
  answer = { head: "HTTP/1.1 200 OK\r\n\r\n", body };
  await assert.rejects(fetchInto(plain), /answered without a length/);
  answer = { head: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", body: Buffer.from("5\r\nhello\r\n0\r\n\r\n") };
  await assert.rejects(fetchInto(plain), /without a length \(Transfer-Encoding chunked\)/);
  answer = ok(body);
  await assert.rejects(fetchInto(plain, { size: body.length + 1 }), new RegExp(`sends ${body.length} bytes, ${body.length + 1} were expected`));
  answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: ${body.length - 5}\r\n\r\n`, body };
  await assert.rejects(fetchInto(plain), /sent more than the \d+ bytes it announced/);
  answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: ${body.length + 5}\r\n\r\n`, body };
  await assert.rejects(fetchInto(plain), new RegExp(`received ${body.length} of ${body.length + 5} bytes`));
  answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: 10\r\ncontent-length: 11\r\n\r\n`, body: body.subarray(0, 11) };
  await assert.rejects(fetchInto(plain), /two different Content-Length headers/);
  answer = { head: "HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n" };
  await assert.rejects(fetchInto(plain), /not an HTTP\/1\.1 answer/);
  answer = { head: "garbage\r\n\r\n" };
  await assert.rejects(fetchInto(plain), /not an HTTP\/1\.1 answer/);
  answer = { head: `HTTP/1.1 200 OK\r\nx: ${"a".repeat(70_000)}` };
  await assert.rejects(fetchInto(plain), /headers pass 65536 bytes/);
});

test("a server that goes silent ends the fetch after the idle timeout; a wrong certificate is refused", async () => {
  answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`, body: body.subarray(0, 1000), hold: true };
  await assert.rejects(fetchInto(plain, { idleTimeoutMs: 300 }), (e: FetchError) => e.status === 0 && /no bytes from the gateway/.test(e.message));
  answer = ok(body);
  await assert.rejects(fetchInto(tls.url), (e: FetchError) => e.status === 0); // the system's CAs do not know it
});

test("downloadVerified: bytes that hash as the answer's header says are kept; others, and error answers, leave no file", async () => {
  const large = Buffer.concat([body, body, body, body, body, body, body]); // larger than the 1 MiB read buffer many times over
  for (const b of [body, large]) {
    const sha = createHash("sha256").update(b).digest("hex");
    const dest = join(dir, `verified-${b.length}`);
    const options = { what: "image x", expected: (h: Record<string, string>) => h["x-beta9-sha256"] ?? "", flags: "wx" as const, mode: 0o600 };
    answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: ${b.length}\r\nx-beta9-sha256: ${sha}\r\n\r\n`, body: b };
    await downloadVerified({ url: plain, token: "t" }, `${plain}/img`, dest, options);
    assert.ok(readFileSync(dest).equals(b));
    rmSync(dest);
    answer = { head: `HTTP/1.1 200 OK\r\ncontent-length: ${b.length}\r\nx-beta9-sha256: ${"0".repeat(64)}\r\n\r\n`, body: b };
    await assert.rejects(downloadVerified({ url: plain, token: "t" }, `${plain}/img`, dest, options), new RegExp(`image x: received bytes hash to ${sha}, expected 0{64}`));
    assert.equal(existsSync(dest), false);
    answer = { head: "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n", body: Buffer.from("no") };
    await assert.rejects(downloadVerified({ url: plain, token: "t" }, `${plain}/img`, dest, { ...options, fetchError: (e) => new Error(`gone ${e.status} ${e.body}`) }), /gone 404 no/);
    assert.equal(existsSync(dest), false);
  }
});
