/**
 * Downloading a volume content: bytes are checked against the hash they are asked by (small
 * contents through the pool, large ones on a socket of their own: fetch-file.ts), and a body that
 * hashes otherwise or ends early leaves no file. A loopback HTTP server stands in for the gateway's blob route.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { downloadBlob, VolumeHttpError } from "./gateway.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-volume-download-"));
const small = randomBytes(100_000);
const large = randomBytes(40 * 1024 * 1024 + 12_345);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Whether this process still holds a descriptor of `path` (deleted or not) (it is closed at once; the wait only absorbs a slow close). */
async function heldOpen(path: string): Promise<boolean> {
  const open = () => readdirSync("/proc/self/fd").some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(path);
    } catch {
      return false;
    }
  });
  for (let i = 0; i < 100 && open(); i++) await new Promise((r) => setTimeout(r, 20));
  return open();
}
let server: Server;
let gw: { url: string; token: string };
let mode: "right" | "tampered" | "short" | "long" | "reset" = "right";

before(async () => {
  server = createServer((req, res) => {
    const body = req.url?.endsWith(sha(small)) ? small : large;
    if (mode === "long") { // chunked, no length: cut off once past the manifest's size
      res.write(body);
      return res.end(Buffer.alloc(1 << 20));
    }
    if (mode === "tampered") {
      const copy = Buffer.from(body);
      copy[copy.length >> 1] = copy[copy.length >> 1]! ^ 1;
      return res.end(copy);
    }
    res.setHeader("content-length", body.length);
    if (mode === "reset") return void res.write(body.subarray(0, body.length >> 1), () => res.socket?.resetAndDestroy());
    if (mode === "short") return void res.write(body.subarray(0, body.length - 10), () => res.socket?.destroy());
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  gw = { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: "t" };
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

for (const [what, body] of [["small (hashed inline)", small], ["large (own socket)", large]] as const) {
  test(`a ${what} content is written whole`, async () => {
    mode = "right";
    const dest = join(dir, `ok-${body.length}`);
    await downloadBlob(gw, "ws", sha(body), body.length, dest);
    assert.ok(readFileSync(dest).equals(body));
  });

  test(`a ${what} content whose bytes hash otherwise leaves no file`, async () => {
    mode = "tampered";
    const dest = join(dir, `bad-${body.length}`);
    await assert.rejects(downloadBlob(gw, "ws", sha(body), body.length, dest), /received bytes hash to [0-9a-f]{64}/);
    assert.equal(existsSync(dest), false);
    assert.equal(await heldOpen(dest), false, "no descriptor of the removed file is left open");
  });

  test(`a ${what} content longer than the manifest says is cut off and leaves no file; a declared length that differs is refused`, async () => {
    mode = "long";
    const dest = join(dir, `long-${body.length}`);
    await assert.rejects(downloadBlob(gw, "ws", sha(body), body.length, dest), /sent more than the manifest's \d+ bytes|answered without a length/);
    assert.equal(existsSync(dest), false);
    mode = "right";
    await assert.rejects(downloadBlob(gw, "ws", sha(body), body.length - 1, dest), /the gateway sends \d+ bytes, (the manifest says \d+|\d+ were expected)/);
    assert.equal(existsSync(dest), false);
  });

  test(`a ${what} content cut short leaves no file`, async () => {
    mode = "short";
    const dest = join(dir, `short-${body.length}`);
    await assert.rejects(downloadBlob(gw, "ws", sha(body), body.length, dest));
    assert.equal(existsSync(dest), false);
    assert.equal(await heldOpen(dest), false, "no descriptor of the removed file is left open");
  });
}

test("a connection reset in a download is the gateway unreachable (transient: the container is told 503), and leaves no file", async () => {
  for (const body of [small, large]) {
    mode = "reset";
    const dest = join(dir, `reset-${body.length}`);
    const err = await downloadBlob(gw, "ws", sha(body), body.length, dest).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof VolumeHttpError, String(err));
    assert.equal(err.transient, true, err.message);
    assert.equal(existsSync(dest), false);
  }
});
