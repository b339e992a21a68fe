// The volume bench's floor: a plain loopback HTTP server that streams a PUT body to a file and a
// GET back from it (what curl -T / curl -o move, with nothing else in the way).
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

const dir = process.argv[2];
const server = createServer(async (req, res) => {
  const file = join(dir, "floor.bin");
  try {
    if (req.method === "PUT") {
      await pipeline(req, createWriteStream(file));
      res.end("ok");
    } else {
      res.writeHead(200, { "content-length": statSync(file).size, "content-type": "application/octet-stream" });
      await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), res);
    }
  } catch (err) {
    res.destroy(err);
  }
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })}\n`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
