/**
 * Downloading a volume content: bytes are checked against the hash they are asked by (inline for
 * small contents, on the hashing thread for large ones), and a body that hashes otherwise or ends
 * early leaves no file. A loopback HTTP server stands in for the gateway's blob route.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { downloadBlob } from "./gateway.js";

const dir = mkdtempSync(join(tmpdir(), "beta9-volume-download-"));
const small = randomBytes(100_000);
const large = randomBytes(40 * 1024 * 1024 + 12_345);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
let server: Server;
let gw: { url: string; token: string };
let mode: "right" | "tampered" | "short" = "right";

before(async () => {
  server = createServer((req, res) => {
    const body = req.url?.endsWith(sha(small)) ? small : large;
    if (mode === "tampered") {
      const copy = Buffer.from(body);
      copy[copy.length >> 1] = copy[copy.length >> 1]! ^ 1;
      return res.end(copy);
    }
    res.setHeader("content-length", body.length);
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

for (const [what, body] of [["small (hashed inline)", small], ["large (hashed on a thread)", large]] as const) {
  test(`a ${what} content is written whole`, async () => {
    mode = "right";
    const dest = join(dir, `ok-${body.length}`);
    await downloadBlob(gw, "ws", sha(body), dest);
    assert.ok(readFileSync(dest).equals(body));
  });

  test(`a ${what} content whose bytes hash otherwise leaves no file`, async () => {
    mode = "tampered";
    const dest = join(dir, `bad-${body.length}`);
    await assert.rejects(downloadBlob(gw, "ws", sha(body), dest), /received bytes hash to [0-9a-f]{64}/);
    assert.equal(existsSync(dest), false);
  });

  test(`a ${what} content cut short leaves no file`, async () => {
    mode = "short";
    const dest = join(dir, `short-${body.length}`);
    await assert.rejects(downloadBlob(gw, "ws", sha(body), dest));
    assert.equal(existsSync(dest), false);
  });
}
