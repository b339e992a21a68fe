/** A runner's whole answer is held only up to a bound, whatever it declares or not. */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { request } from "undici";
import { answerText } from "../workloads/runner-client.js";

let server: Server;
let url = "";
before(async () => {
  // /chunked: 1 MiB in 64 KiB chunks, no length declared; /declared: the same with its length.
  server = createServer((req, res) => {
    const chunk = Buffer.alloc(64 * 1024, 120);
    if (req.url === "/declared") res.setHeader("content-length", String(16 * chunk.length));
    let n = 0;
    const more = () => {
      while (n < 16) {
        n += 1;
        if (!res.write(chunk)) return void res.once("drain", more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => server.close());

test("an answer over the bound fails with UPSTREAM_FAILED naming it, declared or not", async () => {
  for (const path of ["/chunked", "/declared"]) {
    await assert.rejects(answerText(await request(url + path), 256 * 1024), (err: Error & { code?: string }) => err.code === "UPSTREAM_FAILED" && /larger than 0.25 MiB/.test(err.message));
  }
});

test("within the bound it is read whole; an error body may be cut to the bound instead", async () => {
  assert.equal((await answerText(await request(`${url}/chunked`), 2 * 1024 * 1024)).length, 1024 * 1024);
  assert.equal((await answerText(await request(`${url}/declared`), 2 * 1024 * 1024)).length, 1024 * 1024);
  assert.equal((await answerText(await request(`${url}/chunked`), 100_000, { truncate: true })).length, 100_000);
});
